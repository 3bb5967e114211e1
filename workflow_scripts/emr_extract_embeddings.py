"""Image and per-round question embeddings of one split, into safetensors shards (rule extract_embeddings)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from mmemory.emr.data import extract_split  # noqa: E402
from mmemory.encoders import load_encoder  # noqa: E402
from mmemory.io import atomic_write_json  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params
encoder = load_encoder(p.kind, p.path, device=p.device, batch_size=p.batch_size)
summary = extract_split(snakemake.input.data, Path(snakemake.output.index).parent, encoder, p.shard_size,
                        p.on_bad_image)
atomic_write_json(snakemake.output.metrics, {"encoder": encoder.fingerprint, **summary}, indent=2)
