"""LoRA fine-tuning of the counting VLM with TRL's SFTTrainer, for one training seed (rule finetune_counting)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.counting.stage import run_finetune  # noqa: E402

torch.set_num_threads(snakemake.threads)
out = snakemake.output
run_finetune(snakemake.params.model, snakemake.input.train, snakemake.input.val, out.adapter,
             snakemake.params.checkpoints, out.tensorboard, snakemake.params.train, out.metrics)
