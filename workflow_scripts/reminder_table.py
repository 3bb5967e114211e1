"""The <reminder> variants' table on test, mean and spread over the training seeds, the question-group and
retrieval tables, the positive controls, and the figure (rule reminder_table)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.reminder.prompts import ReminderConfig  # noqa: E402
from mmemory.reminder.stage import build_table  # noqa: E402

inp = snakemake.input
build_table(snakemake.params.runs, inp.teacher, list(inp.finetune), snakemake.output.metrics, snakemake.output.figure,
            train_json=inp.train, eval_json=inp.test, context=inp.context[0] if inp.context else None,
            memory_top_k=ReminderConfig.from_dict(snakemake.params.reminder).memory_top_k,
            toy_vlm_metrics=inp.toy_vlm[0] if inp.toy_vlm else None)
