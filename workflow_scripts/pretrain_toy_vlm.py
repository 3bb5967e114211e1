"""Pre-train the tiny Gemma-3 stand-in to see and read, on train content only (rule pretrain_toy_vlm)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.io import atomic_write_json  # noqa: E402
from mmemory.toy.pretrain_vlm import PretrainVLMConfig, pretrain_toy_vlm  # noqa: E402
from mmemory.toy.visdial import ToyVisDialConfig  # noqa: E402

torch.set_num_threads(snakemake.threads)
toy = ToyVisDialConfig.from_dict(snakemake.params.toy)
metrics = pretrain_toy_vlm(snakemake.input.vlm, snakemake.output.model,
                           {"train": toy.n_train, "val": toy.n_val, "test": toy.n_test},
                           toy.image_size, toy.max_objects, PretrainVLMConfig.from_dict(snakemake.params.settings))
atomic_write_json(snakemake.output.metrics, metrics, indent=2)
