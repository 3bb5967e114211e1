"""Build the tiny LLaVA (CLIP vision tower + Llama) and its processor (rule build_counting_toy_model)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.counting.model import CountingToySize, build_tiny_llava  # noqa: E402
from mmemory.io import atomic_write_json  # noqa: E402

stats = build_tiny_llava(snakemake.output.model, CountingToySize.from_dict(snakemake.params.sizes),
                         seed=snakemake.params.seed)
atomic_write_json(snakemake.output.metrics, stats, indent=2)
