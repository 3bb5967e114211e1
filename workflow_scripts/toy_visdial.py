"""Render the toy VisDial dataset (rule toy_visdial)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

from mmemory.toy.visdial import ToyVisDialConfig, build_toy_visdial  # noqa: E402

toy = ToyVisDialConfig.from_dict(snakemake.params.toy)
build_toy_visdial(Path(snakemake.output.train_json).parent, **asdict(toy), n_options=snakemake.params.n_options,
                  seed=snakemake.params.seed)
