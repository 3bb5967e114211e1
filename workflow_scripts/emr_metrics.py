"""Gather the EMR variants on test (mean and spread over the training seeds), toy-encoder retrieval and extraction
counts into metrics.json (rule emr_metrics)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.emr.stage import build_table  # noqa: E402

inp, p = snakemake.input, snakemake.params
build_table(p.evals, inp.losses, inp.summaries, inp.extraction, inp.toy, inp.train, inp.test,
            snakemake.output.metrics, snakemake.output.curves, bridge=p.bridge, emr=p.emr)
