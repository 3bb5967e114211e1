"""The <reminder> variants' table on test, mean and spread over the training seeds, and its figure (rule reminder_table)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.reminder.stage import build_table  # noqa: E402

build_table(snakemake.params.runs, snakemake.input.teacher, list(snakemake.input.finetune),
            snakemake.output.metrics, snakemake.output.figure)
