"""Chain one split's dialogues into long memory sessions with back-referring queries (rule memory_sessions)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.memory.stage import run_sessions  # noqa: E402

cfg = snakemake.params.sessions
run_sessions(snakemake.input.dialogs, snakemake.output.turns, snakemake.output.queries,
             dialogs_per_session=cfg["dialogs_per_session"], hours_between_dialogs=cfg["hours_between_dialogs"],
             queries_per_type=cfg["queries_per_type"], seed=snakemake.params.seed,
             max_sessions=snakemake.params.max_sessions)
