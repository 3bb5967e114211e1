"""Greedy answers to "How many people are in this image?" before or after fine-tuning (rule predict_counting)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.counting.data import load_split  # noqa: E402
from mmemory.counting.predict import CountingGenerationConfig, predict_counts  # noqa: E402

torch.set_num_threads(snakemake.threads)
adapter = snakemake.input.adapter[0] if snakemake.input.adapter else None
predict_counts(snakemake.params.model, adapter, load_split(snakemake.input.data),
               CountingGenerationConfig.from_dict(snakemake.params.generation), snakemake.output.predictions)
