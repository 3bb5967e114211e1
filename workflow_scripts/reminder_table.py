"""The <reminder> variants' table and figure (rule reminder_table)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.reminder.stage import build_table  # noqa: E402

build_table(dict(zip(snakemake.params.variants, snakemake.input.variants)), snakemake.input.teacher,
            snakemake.input.finetune[0] if snakemake.input.finetune else None, snakemake.output.metrics,
            snakemake.output.figure)
