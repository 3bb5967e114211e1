"""LM pre-training of the tiny Llama on toy train text (rule pretrain_toy_llm)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.emr.stage import run_toy_llm  # noqa: E402

torch.set_num_threads(snakemake.threads)
run_toy_llm(snakemake.input.llm, snakemake.input.train, snakemake.input.val, snakemake.output.model,
            snakemake.output.metrics, snakemake.params.settings, snakemake.params.emr, seed=snakemake.params.seed)
