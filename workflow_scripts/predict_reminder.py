"""Generate one <reminder> variant's responses for the last round of each dialogue of one split (rule predict_reminder)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.reminder.predict import GenerationConfig  # noqa: E402
from mmemory.reminder.prompts import ReminderConfig  # noqa: E402
from mmemory.reminder.stage import run_predict  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params
reminder = ReminderConfig.from_dict(p.reminder)
run_predict(snakemake.wildcards.variant, snakemake.input.data, p.model, p.prompts,
            GenerationConfig.from_dict(p.generation), dict(snakemake.output.items()), p.progress,
            adapter=snakemake.input.get("adapter"), memories_path=snakemake.input.get("memories"),
            memory_top_k=reminder.memory_top_k, include_caption=reminder.include_caption)
