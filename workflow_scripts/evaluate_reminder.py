"""Score one <reminder> variant's predictions (rule evaluate_reminder)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.reminder.stage import run_evaluate  # noqa: E402

torch.set_num_threads(snakemake.threads)
run_evaluate(snakemake.input.predictions, snakemake.input.data, snakemake.input.dense,
             snakemake.params.evaluation, snakemake.output.metrics)
