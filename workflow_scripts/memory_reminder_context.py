"""Top-k memories per dialogue of one split, queried with its last round's question (rule memory_reminder_context).
On val the weights are chosen; on test the val choice is read from the val metrics file."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.memory.context import ReminderContextConfig  # noqa: E402
from mmemory.memory.scoring import MemoryConfig  # noqa: E402
from mmemory.memory.stage import encoder_label, load_memory_encoder, run_reminder_context, store_settings  # noqa: E402

torch.set_num_threads(snakemake.threads)
p, chosen = snakemake.params, snakemake.input.chosen
rc = ReminderContextConfig.from_dict(p.reminder)
run_reminder_context(snakemake.input.dialogs, load_memory_encoder(p.encoder), rc.k, rc.dialogs_per_session,
                     rc.weights, store_settings(p.memory, p.index), p.workdir,
                     snakemake.output.context, snakemake.output.metrics, encoder_name=encoder_label(p.encoder),
                     candidates=None if chosen else MemoryConfig.from_dict(p.memory).methods,
                     chosen_metrics=chosen[0] if chosen else None, select_k=p.select_k)
