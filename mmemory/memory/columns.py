"""The fields of each memory that scoring reads, as numpy arrays indexed by memory id, beside the FAISS index.

The index returns vector ids (memory id * 8 + slot); a search scores its candidates' recency, frequency, saliency,
neighbours and episodes from these arrays and reads SQLite rows only for the top k it returns (and, once per memory,
the text of a candidate of a text query, for the lexical cues). At 1M memories a candidate's row is a random page of
a 4.5 GB file: reading 40 of them cost 0.5-1.2 ms per search, more than the rest of the store's work
(docs/memory.md, "Benchmark").

SQLite stays the truth; the arrays are a cache of the `memories` table kept in step by `MemoryStore._columns_sync`:
loaded whole on the first search, appended from the database after a commit (its `generation` moved), loaded again
after deletions (`delete_generation`), and their access counts are mirrored by the store's own `mark_accessed`, or
read again when another connection counted accesses (`access_generation`).
"""
from __future__ import annotations

import sqlite3

import numpy as np

FIELDS = {"present": bool, "session": np.int32, "turn": np.int64, "timestamp": np.float64, "speaker": np.int32,
          "access_count": np.int64, "saliency": np.float64}


class ScoringColumns:
    """present / session / turn / timestamp / speaker / access_count / saliency of memory id i at position i (session
    and speaker as codes into `names`); positions of ids that do not exist (deleted, or beyond `max_id`) are not
    `present`. `generation` and `access_generation` are the database counters the arrays reflect."""

    SELECT = "SELECT id, session, turn, timestamp, speaker, access_count, saliency FROM memories"

    def __init__(self):
        for name, dtype in FIELDS.items():
            setattr(self, name, np.zeros(0, dtype))
        self.names: list[str] = []          # code -> session or speaker name
        self._codes: dict[str, int] = {}
        self.max_id = 0
        self.generation = self.access_generation = -1

    def _grow(self, size: int) -> None:
        if size > len(self.present):
            size = max(size, 2 * len(self.present))   # appends one at a time stay amortised O(1)
            for name in FIELDS:
                old = getattr(self, name)
                new = np.zeros(size, old.dtype)
                new[:len(old)] = old
                setattr(self, name, new)

    def _code(self, names) -> list[int]:
        codes = self._codes
        out = [codes.setdefault(s, len(codes)) for s in names]
        if len(codes) > len(self.names):      # a dict keeps insertion order: the new names are its last keys
            self.names.extend(list(codes)[len(self.names):])
        return out

    def append(self, db: sqlite3.Connection, chunk: int = 100_000) -> int:
        """Read the memories with an id above `max_id` (those committed since; all of them when empty); returns how
        many. Column by column from chunks of rows: at 1M memories the whole table loads in about a second."""
        cursor = db.execute(f"{self.SELECT} WHERE id > ? ORDER BY id", (self.max_id,))
        n = 0
        while rows := cursor.fetchmany(chunk):
            ids, session, turn, ts, speaker, access, sal = zip(*rows)
            ids = np.array(ids, dtype=np.int64)
            self._grow(int(ids[-1]) + 1)
            self.present[ids] = True
            self.session[ids] = self._code(session)
            self.speaker[ids] = self._code(speaker)
            self.turn[ids] = turn
            self.timestamp[ids] = ts
            self.access_count[ids] = access
            self.saliency[ids] = sal
            self.max_id = int(ids[-1])
            n += len(ids)
        return n

    def reload_access(self, db: sqlite3.Connection) -> None:
        """Read every access count again (another connection counted retrievals; counts only grow, and a memory
        never retrieved has 0)."""
        self.access_count[:] = 0
        rows = db.execute("SELECT id, access_count FROM memories WHERE access_count > 0 AND id <= ?",
                          (self.max_id,)).fetchall()
        if rows:
            ids, counts = zip(*rows)
            self.access_count[np.array(ids, dtype=np.int64)] = counts

    def count_access(self, memory_ids: list[int]) -> None:
        """One more retrieval of each id (an id given twice counts twice, as the database's UPDATE does)."""
        ids = np.asarray(memory_ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < len(self.present))]
        ids = ids[self.present[ids]]
        np.add.at(self.access_count, ids, 1)

    def known(self, ids: np.ndarray) -> np.ndarray:
        """Which of these memory ids are present."""
        ok = (ids >= 0) & (ids < len(self.present))
        ok[ok] = self.present[ids[ok]]
        return ok

    def sessions(self, ids: np.ndarray) -> list[str]:
        return [self.names[c] for c in self.session[ids].tolist()]
