"""LoRA fine-tuning of the counting VLM with TRL's SFTTrainer, for one training seed (rule finetune_counting)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.counting.data import load_split  # noqa: E402
from mmemory.counting.train import CountingTrainConfig, finetune_counting  # noqa: E402

torch.set_num_threads(snakemake.threads)
out = snakemake.output
finetune_counting(snakemake.params.model, load_split(snakemake.input.train), load_split(snakemake.input.val),
                  out.adapter, snakemake.params.checkpoints, out.tensorboard,
                  CountingTrainConfig.from_dict(snakemake.params.train), out.metrics)
