"""Top-k memories per dialogue of one split, queried with its last round's question (rule memory_reminder_context).
On val the weights are chosen; on test the val choice is read from the val metrics file."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.memory.stage import encoder_label, load_memory_encoder, run_reminder_context  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params
enc, rc = p.encoder, p.reminder
run_reminder_context(snakemake.input.dialogs, load_memory_encoder(enc["kind"], enc["path"], enc.get("device", "cpu")),
                     rc["k"], rc["dialogs_per_session"], rc["weights"], p.store, p.workdir,
                     snakemake.output.context, snakemake.output.metrics,
                     encoder_name=encoder_label(enc["kind"], enc["path"]),
                     candidates=None if snakemake.input.chosen else p.candidates,
                     chosen_metrics=snakemake.input.chosen[0] if snakemake.input.chosen else None,
                     select_k=p.select_k)
