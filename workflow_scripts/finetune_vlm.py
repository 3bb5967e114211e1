"""LoRA fine-tuning of the Gemma-3 VLM on the teacher data (rule finetune_vlm)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.reminder.stage import run_finetune  # noqa: E402

torch.set_num_threads(snakemake.threads)
run_finetune(
    snakemake.input.data, snakemake.input.train, snakemake.params.model, snakemake.params.finetune,
    snakemake.params.prompts, snakemake.output.adapter, snakemake.params.checkpoints, snakemake.output.metrics,
    include_caption=snakemake.params.include_caption, threads=snakemake.threads,
    memory_top_k=snakemake.params.memory_top_k, seed=snakemake.params.seed,
)
