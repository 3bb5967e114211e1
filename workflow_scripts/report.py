"""Gather metrics and figures into results/report.md and every number into results/summary.csv (rule report)."""
from pathlib import Path

from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.report import ReportConfig, build_report  # noqa: E402

p = snakemake.params
build_report(ReportConfig.from_dict(p.report).title, dict(p.sections), dict(p.figures), snakemake.input.data_report,
             snakemake.output.report, snakemake.output.overview, out_csv=snakemake.output.summary,
             data_source=p.data_source, train_seeds=list(p.train_seeds), benchmarks_dir=p.benchmarks,
             logs_dir=Path(snakemake.output.report).parent)  # results/: the trainers' TensorBoard folders
