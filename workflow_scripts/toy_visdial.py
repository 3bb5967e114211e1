"""Render the toy VisDial dataset (rule toy_visdial)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from pathlib import Path  # noqa: E402

from mmemory.toy.visdial import build_toy_visdial  # noqa: E402

toy = snakemake.params.toy
build_toy_visdial(
    Path(snakemake.output.train_json).parent,
    n_train=toy["n_train"], n_val=toy["n_val"], n_test=toy["n_test"], image_size=toy["image_size"], rounds=toy["rounds"],
    n_options=snakemake.params.n_options, max_objects=toy["max_objects"], seed=snakemake.params.seed,
    dialogs_per_user=toy.get("dialogs_per_user", 8), memory_share=toy.get("memory_share", 0.0),
)
