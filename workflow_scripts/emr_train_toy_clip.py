"""Contrastive training of the tiny CLIP on toy train images + captions (rule train_toy_clip)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.emr.stage import run_toy_clip  # noqa: E402

torch.set_num_threads(snakemake.threads)
run_toy_clip(snakemake.input.clip, snakemake.input.train, snakemake.input.val, snakemake.output.model,
             snakemake.output.metrics, snakemake.params.settings, seed=snakemake.params.seed)
