"""Rule memory_sessions: chain toy VisDial dialogues into long memory sessions with back-referring queries
(evaluation sessions from one split; weight-tuning sessions from the training split)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import json
import logging

from mmemory.io import atomic_write_text
from mmemory.memory.sessions import build_sessions
from mmemory.visdial import load_visdial

cfg = snakemake.params.sessions
jobs = [(snakemake.input.dialogs, None, snakemake.output.turns, snakemake.output.queries),
        (snakemake.input.tune_dialogs, snakemake.params.tune["sessions"], snakemake.output.tune_turns,
         snakemake.output.tune_queries)]
for src, max_sessions, turns_out, queries_out in jobs:
    split = load_visdial(src)
    turns, queries = build_sessions(split, dialogs_per_session=cfg["dialogs_per_session"],
                                    hours_between_dialogs=cfg["hours_between_dialogs"],
                                    queries_per_type=cfg["queries_per_type"], seed=snakemake.params.seed,
                                    max_sessions=max_sessions)
    if not queries and max_sessions != 0:
        raise ValueError(f"{src}: {len(split.dialogs)} dialogues give no memory queries; lower "
                         f"memory.sessions.dialogs_per_session ({cfg['dialogs_per_session']}) or add dialogues")
    for path, rows in ((turns_out, turns), (queries_out, queries)):
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    logging.info("%s: %d turns and %d queries in %d sessions", src, len(turns), len(queries),
                 len({t["session_id"] for t in turns}))
