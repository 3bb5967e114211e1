"""LoRA fine-tuning of the Gemma-3 VLM on the teacher data, for one training seed (rule finetune_vlm)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.reminder.stage import run_finetune_vlm  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params
run_finetune_vlm(snakemake.input.data, snakemake.input.train, p.model, p.finetune, p.seed, p.prompts, p.reminder,
                 snakemake.output.adapter, p.checkpoints, snakemake.output.metrics)
