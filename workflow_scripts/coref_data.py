"""The coref dialogues -> validated, content-disjoint train/val/test splits and data_report.json (rule coref_data)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.coref.stage import CorefDataConfig, prepare_coref_data  # noqa: E402

out = dict(zip(("train", "val", "test"), snakemake.output.splits))
prepare_coref_data(CorefDataConfig.from_dict(snakemake.params.data), out, snakemake.output.report)
