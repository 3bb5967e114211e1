"""Teacher <reminder> responses for the training dialogues (rule generate_reminder_data)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.reminder.stage import run_generate  # noqa: E402

run_generate(
    snakemake.input.train, snakemake.params.teacher, snakemake.params.prompts,
    {"data": snakemake.output.data, "rejects": snakemake.output.rejects, "metrics": snakemake.output.metrics},
    snakemake.params.progress, seed=snakemake.params.seed, include_caption=snakemake.params.include_caption,
)
