"""Image and per-round question embeddings of one split, into safetensors shards (rule extract_embeddings)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.emr.stage import run_extract  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params
run_extract(snakemake.input.data, snakemake.output.index, snakemake.output.metrics, p.encoder, p.path, p.extract, p.emr)
