"""Toy frames, the Mall layout or COCO person counts -> content-disjoint train/val/test and data_report.json
(rule counting_data)."""
from pathlib import Path

from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.counting.stage import prepare_counting_data  # noqa: E402

prepare_counting_data(snakemake.params.data, Path(snakemake.output.splits[0]).parent, snakemake.params.toy_root,
                      snakemake.output.report)
