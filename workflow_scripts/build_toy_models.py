"""Build the tiny stand-in models (rule build_toy_models)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.io import atomic_write_json  # noqa: E402
from mmemory.toy.models import ToySizes, build_toy_models  # noqa: E402

out = snakemake.output
sizes = ToySizes.from_dict({**snakemake.params.sizes, "image_size": snakemake.params.image_size})
metrics = build_toy_models(
    [snakemake.input.train], [], sizes,
    {"tokenizer": out.tokenizer, "llm": out.llm, "vlm": out.vlm, "clip": out.clip}, seed=snakemake.params.seed,
)
atomic_write_json(out.metrics, metrics, indent=2)
