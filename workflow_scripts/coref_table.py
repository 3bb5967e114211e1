"""The coref table on test: models x protocols with 95% intervals, the chance and shortcut baselines, position bias,
per-kind accuracy, the positive controls and the figure (rule coref_table)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.coref.stage import build_table  # noqa: E402

inp = snakemake.input
build_table(snakemake.params.runs, inp.train, inp.test, snakemake.params.train_metrics, inp.data_report,
            snakemake.output.metrics, snakemake.output.figure, val_json=inp.val, oracle=snakemake.params.oracle)
