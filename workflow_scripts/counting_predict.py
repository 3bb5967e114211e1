"""Greedy answers to "How many people are in this image?" before or after fine-tuning (rule predict_counting)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.counting.stage import run_predict  # noqa: E402

torch.set_num_threads(snakemake.threads)
adapter = snakemake.input.adapter[0] if snakemake.input.adapter else None
run_predict(snakemake.params.model, adapter, snakemake.input.data, snakemake.params.generation,
            snakemake.output.predictions)
