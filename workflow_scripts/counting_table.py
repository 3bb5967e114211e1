"""Counting metrics on test with the baselines, mean and spread over the training seeds, and the figures
(rule counting_table)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.counting.stage import build_table  # noqa: E402

out = snakemake.output
build_table(snakemake.params.runs, snakemake.input.train, snakemake.input.test, list(snakemake.input.train_metrics),
            snakemake.input.data_report, snakemake.params.classical, snakemake.params.tensorboard,
            out.metrics, out.scatter, out.buckets, val_json=snakemake.input.val)
