"""Chain one split's dialogues into long memory sessions with back-referring queries (rule memory_sessions)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from dataclasses import asdict  # noqa: E402

from mmemory.memory.sessions import SessionsConfig  # noqa: E402
from mmemory.memory.stage import run_sessions  # noqa: E402

run_sessions(snakemake.input.dialogs, snakemake.output.turns, snakemake.output.queries,
             **asdict(SessionsConfig.from_dict(snakemake.params.sessions)), seed=snakemake.params.seed,
             max_sessions=snakemake.params.max_sessions)
