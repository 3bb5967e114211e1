"""The embedded default's tiny coref Llamas, of different sizes, with a tokenizer trained on the train split
(rule build_coref_toy_models)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.coref.models import CorefToySize, build_toy_coref_models  # noqa: E402

p = snakemake.params
sizes = {name: CorefToySize.from_dict(s) for name, s in p.sizes.items()}
build_toy_coref_models(snakemake.input.train, dict(p.out), sizes, seed=p.seed)
