"""Top-k memories per dialogue of one split, queried with its last round's question (rule memory_reminder_context).
On val the weights are chosen; on test the val choice is read from the val metrics file."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.memory.stage import reminder_context_step  # noqa: E402

torch.set_num_threads(snakemake.threads)
p, chosen = snakemake.params, snakemake.input.chosen
reminder_context_step(snakemake.input.dialogs, p.encoder, p.memory, p.reminder, p.index, p.workdir,
                      snakemake.output.context, snakemake.output.metrics, chosen_metrics=chosen[0] if chosen else None,
                      select_k=p.select_k)
