"""Contrastive training of the tiny CLIP on toy train images + captions (rule train_toy_clip)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.toy.pretrain import train_toy_clip  # noqa: E402
from mmemory.io import atomic_write_json  # noqa: E402

torch.set_num_threads(snakemake.threads)
s = snakemake.params.settings
metrics = train_toy_clip(snakemake.input.clip, snakemake.input.train, snakemake.input.val, snakemake.output.model,
                         epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], dialog_text=s["dialog_text"],
                         seed=snakemake.params.seed)
atomic_write_json(snakemake.output.metrics, metrics, indent=2)
