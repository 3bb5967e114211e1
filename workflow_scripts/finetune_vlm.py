"""LoRA fine-tuning of the Gemma-3 VLM on the teacher data, for one training seed (rule finetune_vlm)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.reminder.finetune import FinetuneConfig, run_finetune  # noqa: E402
from mmemory.reminder.prompts import ReminderConfig  # noqa: E402
from mmemory.reminder.stage import prompt_book  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params
reminder = ReminderConfig.from_dict(p.reminder)
run_finetune(snakemake.input.data, snakemake.input.train, p.model,
             FinetuneConfig.from_dict({**p.finetune, "seed": p.seed}), prompt_book(p.prompts),
             snakemake.output.adapter, p.checkpoints, snakemake.output.metrics,
             include_caption=reminder.include_caption, memory_top_k=reminder.memory_top_k)
