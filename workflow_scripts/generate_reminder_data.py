"""Teacher <reminder> responses for the training dialogues (rule generate_reminder_data)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.reminder.prompts import ReminderConfig  # noqa: E402
from mmemory.reminder.stage import run_generate  # noqa: E402

p = snakemake.params
run_generate(
    snakemake.input.train, p.teacher, p.prompts,
    {"data": snakemake.output.data, "rejects": snakemake.output.rejects, "metrics": snakemake.output.metrics},
    p.progress, seed=p.seed, include_caption=ReminderConfig.from_dict(p.reminder).include_caption,
)
