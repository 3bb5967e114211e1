"""Rule memory_sessions: chain toy VisDial dialogues into long memory sessions with back-referring queries."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import logging

from mmemory.io import atomic_write_text
from mmemory.memory.sessions import build_sessions
from mmemory.visdial import load_visdial
import json

cfg = snakemake.params.sessions
split = load_visdial(snakemake.input.dialogs)
turns, queries = build_sessions(split, dialogs_per_session=cfg["dialogs_per_session"],
                                hours_between_dialogs=cfg["hours_between_dialogs"],
                                queries_per_type=cfg["queries_per_type"], seed=snakemake.params.seed)
if not queries:
    raise ValueError(f"{snakemake.input.dialogs}: {len(split.dialogs)} dialogues give no memory queries; "
                     f"lower memory.sessions.dialogs_per_session ({cfg['dialogs_per_session']}) or add dialogues")
for path, rows in ((snakemake.output.turns, turns), (snakemake.output.queries, queries)):
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
logging.info("%d turns and %d queries in %d sessions", len(turns), len(queries), len({t["session_id"] for t in turns}))
