"""The embedded default's tiny coref Llamas, of different sizes, with a tokenizer trained on the train split
(rule build_coref_toy_models)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.coref.stage import build_toy_models  # noqa: E402

p = snakemake.params
build_toy_models(snakemake.input.train, p.out, p.sizes, seed=p.seed, target=p.target)
