"""Gather metrics and figures into results/report.md (rule report)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.report import build_report  # noqa: E402

p = snakemake.params
build_report(p.title, dict(p.sections), dict(p.figures), snakemake.input.data_report, snakemake.output.report,
             snakemake.output.overview, config=dict(p.config), benchmarks_dir=p.benchmarks)
