"""Build the tiny LLaVA (CLIP vision tower + Llama) and its processor (rule build_counting_toy_model)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.counting.stage import build_toy_model  # noqa: E402

build_toy_model(snakemake.output.model, snakemake.params.sizes, snakemake.params.seed, snakemake.output.metrics)
