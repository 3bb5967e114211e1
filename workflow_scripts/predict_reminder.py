"""Generate one <reminder> variant's responses for the last round of each dialogue of one split (rule predict_reminder)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.reminder.stage import run_predict  # noqa: E402

torch.set_num_threads(snakemake.threads)
run_predict(
    snakemake.wildcards.variant, snakemake.input.data, snakemake.params.model, snakemake.params.prompts,
    snakemake.params.generation,
    {"predictions": snakemake.output.predictions, "generations": snakemake.output.generations,
     "metrics": snakemake.output.metrics},
    snakemake.params.progress, adapter=snakemake.input.get("adapter"), memories_path=snakemake.input.get("memories"),
    memory_top_k=snakemake.params.memory_top_k, include_caption=snakemake.params.include_caption,
)
