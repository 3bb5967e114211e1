"""Pre-train the tiny Gemma-3 stand-in to see and read, on train content only (rule pretrain_toy_vlm)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.reminder.stage import run_pretrain_toy_vlm  # noqa: E402

torch.set_num_threads(snakemake.threads)
run_pretrain_toy_vlm(snakemake.input.vlm, snakemake.output.model, snakemake.output.metrics, snakemake.params.toy,
                     snakemake.params.settings)
