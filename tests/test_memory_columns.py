"""The store scores from numpy columns beside the index (`mmemory.memory.columns`), not from SQLite rows: the same
ids and the same scores as the row-reading scoring it replaced (kept here as `reference`), and columns that follow
adds, access counts (its own and another connection's), deletions and a reopen.

    pytest tests/test_memory_columns.py -q
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder  # noqa: E402

import mmemory.memory.lexical as lexical  # noqa: E402
from mmemory.memory import MemoryStore  # noqa: E402
from mmemory.memory.columns import FIELDS, ScoringColumns  # noqa: E402
from mmemory.memory.scoring import CONTEXT, combine, episodes, frequency, recency, saliency  # noqa: E402
from mmemory.memory.store import memory_key, to_unix  # noqa: E402

T0 = 1704067200.0   # 2024-01-01T00:00:00Z
WORDS = ("dog", "cat", "park", "pizza", "guitar", "beach", "train", "book", "garden", "coffee", "rain", "movie")
QUERIES = ("what did ann say about the dog?", "when did bob go to the beach?", "pizza and coffee in the park",
           "what happened on 3 January, 2024?", "the guitar book", "did ann like the movie in January?")
WEIGHTS = [None, {"relevance": 1, "recency": 1, "frequency": 1, "saliency": 1},
           {"relevance": 1, "neighbours": 0.5, "diversity": 0.3, "frequency": 0.5},
           {"relevance": 1, "lexical": 1, "speaker": 1, "dates": 1, "temporal": 1, "episode": 1}]


def items(rng: np.random.Generator, n: int, start: float, sessions: int = 4) -> list[dict]:
    """n synthetic turns over `sessions` sessions: texts from a small vocabulary (some with time words), two speakers,
    gaps of minutes or of days (new episodes), saliency given or left to the heuristic."""
    out, ts = [], start
    for i in range(n):
        ts += float(rng.choice([60.0, 600.0, 86400.0 * 2], p=[0.6, 0.3, 0.1]))
        words = " ".join(rng.choice(WORDS, 3))
        out.append({"text": f"{words} yesterday" if i % 7 == 0 else words, "session": f"s{i % sessions}",
                    "speaker": ("ann", "bob")[i % 2], "timestamp": ts,
                    "saliency": None if i % 3 else float(rng.integers(1, 11))})
    return out


def reference(store: MemoryStore, query: str, now_ts: float, weights: dict | None, session=None, before=None):
    """The scoring the store did before the columns, from the candidates' SQLite rows: (ids best first, scores,
    raw components by id)."""
    weights = weights or store.weights
    q = store._check_vector(store._encode_texts([query], "q")[0], "q")
    with store._snapshot():
        cand = store._candidates(q, session, None if before is None else to_unix(before))
        rows = {r[0]: r for r in store._rows(list(cand))}
        mids = [m for m in cand if m in rows]
        if store.recency_unit == "hours":
            ages = np.array([(now_ts - rows[m][3]) / 3600.0 for m in mids])
        elif store.recency_unit == "span":
            first = {s: store.db.execute("SELECT MIN(timestamp) FROM memories WHERE session=?", (s,)).fetchone()[0]
                     for s in {rows[m][1] for m in mids}}
            ages = np.array([(now_ts - rows[m][3]) / max(now_ts - first[rows[m][1]], 1.0) for m in mids])
        else:
            latest = {s: store.db.execute("SELECT COALESCE(MAX(turn), 0) FROM memories WHERE session=? AND "
                                          "timestamp<=?", (s, now_ts)).fetchone()[0]
                      for s in {rows[m][1] for m in mids}}
            ages = np.array([latest[rows[m][1]] + 1 - rows[m][2] for m in mids], dtype=np.float64)
    raw = {"relevance": np.array([cand[m] for m in mids]), "recency": recency(ages, store.half_life),
           "frequency": frequency(np.array([rows[m][8] for m in mids])),
           "saliency": saliency(np.array([rows[m][10] for m in mids], dtype=np.float64))}
    docs = [lexical.DocCues(lexical.tokenize(memory_key(rows[m][4], rows[m][5], rows[m][7])), rows[m][5], rows[m][3])
            for m in mids]
    raw["lexical"] = lexical.bm25_counted(lexical.tokenize(query), docs)
    raw["speaker"] = np.array([lexical.names_speaker(query, rows[m][4]) for m in mids], dtype=np.float64)
    temporal = np.array([d.time_cue for d in docs], dtype=np.float64) if lexical.asks_when(query) \
        else np.zeros(len(mids))
    dates = lexical.named_dates(query)
    if dates:
        temporal = np.maximum(temporal, [any(d.year == y and (mo is None or d.month == mo) for y, mo in dates)
                                         for d in docs])
    raw["temporal"] = temporal
    periods = lexical.question_periods(query, now_ts)
    raw["dates"] = (np.array([lexical.names_period(periods, d.periods) for d in docs], dtype=np.float64)
                    if periods else np.zeros(len(mids)))
    position = {(rows[m][1], rows[m][2]): i for i, m in enumerate(mids)}
    neighbours = tuple(np.array([position.get((rows[m][1], rows[m][2] + d), -1) for m in mids]) for d in (-1, 1))
    groups = episodes([rows[m][1] for m in mids], np.array([rows[m][3] for m in mids]), store.episode_gap_hours)
    score, _ = combine(raw, {c: w for c, w in weights.items() if c in raw or c in CONTEXT}, neighbours, groups)
    ids = np.array(mids, dtype=np.int64)
    order = np.lexsort((ids, -raw["relevance"], -score))
    return ids[order].tolist(), score[order].tolist(), {m: {c: float(v[i]) for c, v in raw.items()}
                                                        for i, m in enumerate(mids)}


def same_as_reference(store: MemoryStore, rng: np.random.Generator, now_ts: float, k: int = 8) -> int:
    """Every query x weights (and one session / time filter): the hits equal the reference's top k exactly (ids,
    scores, raw components); the searches count accesses as they go, so later ones read counts the earlier wrote."""
    checked = 0
    for query in QUERIES:
        for weights in WEIGHTS:
            session, before = (("s1", now_ts - 86400.0) if rng.random() < 0.3 else (None, None))
            ids, scores, raw = reference(store, query, now_ts, weights, session, before)
            hits = store.search(query_text=query, now=now_ts, k=k, weights=weights, session=session, before=before)
            assert [h.memory.id for h in hits] == ids[:k], (query, weights)
            assert [h.score for h in hits] == scores[:k], (query, weights)
            assert all(h.raw == raw[h.memory.id] for h in hits)
            checked += len(hits)
    return checked


def assert_columns_match_database(store: MemoryStore) -> None:
    """The store's columns hold what a fresh load from SQLite holds."""
    with store._snapshot():
        mine = store._columns_sync()
        fresh = ScoringColumns()
        fresh.append(store.db)
    n = max(len(mine.present), len(fresh.present))
    for name in FIELDS:
        a, b = (np.pad(getattr(c, name), (0, n - len(getattr(c, name)))) for c in (mine, fresh))
        if name in ("session", "speaker"):   # codes may differ: compare the names they stand for
            a = np.array([mine.names[x] if p else "" for x, p in zip(a, mine.present.tolist() + [False] * n)])
            b = np.array([fresh.names[x] if p else "" for x, p in zip(b, fresh.present.tolist() + [False] * n)])
        assert np.array_equal(a, b), name


@pytest.mark.parametrize("unit", ["hours", "turns", "span"])
def test_scores_equal_the_row_reading_reference_through_adds_accesses_deletes_and_reopen(tmp_path, unit):
    rng = np.random.default_rng(0)
    kw = dict(encoder=FakeEncoder(), index="flat", exhaustive_below=0, n_candidates=30, recency_unit=unit)
    store = MemoryStore(tmp_path / "m", **kw)
    store.add_many(items(rng, 300, T0))
    now = T0 + 86400.0 * 120
    assert same_as_reference(store, rng, now) > 0
    assert store._columns is not None and int(store._columns.access_count.sum()) > 0  # searches counted accesses
    assert_columns_match_database(store)

    store.add_many(items(rng, 120, now))          # appended to the columns after the commit
    store.add("the dog in the park", session="s9", speaker="cy", timestamp=now + 7200.0)
    now += 86400.0 * 60
    same_as_reference(store, rng, now)
    assert_columns_match_database(store)

    gone = store.forget(now=now, threshold=0.05, strength_hours=24.0 * 30)   # deletions: loaded again
    assert gone and len(store) > 100
    assert not store._columns.known(np.array(gone)).any()
    same_as_reference(store, rng, now)
    assert_columns_match_database(store)
    store.close()

    store = MemoryStore(tmp_path / "m", **kw)        # reopened: loaded from SQLite on the first search
    assert store._columns is None
    same_as_reference(store, rng, now)
    assert_columns_match_database(store)
    store.close()


def test_another_connections_writes_reach_the_columns(tmp_path):
    """Accesses counted and memories added or deleted through another MemoryStore on the same path (another
    process, in effect) are read again, not missed: meta access_generation / generation / delete_generation."""
    rng = np.random.default_rng(1)
    kw = dict(encoder=FakeEncoder(), index="flat", exhaustive_below=0, n_candidates=20)
    a = MemoryStore(tmp_path / "m", **kw)
    a.add_many(items(rng, 200, T0))
    now = T0 + 86400.0 * 30
    same_as_reference(a, rng, now)
    b = MemoryStore(tmp_path / "m", **kw)
    b.mark_accessed(list(range(1, 60)) * 3, now=now)
    b.add_many(items(rng, 50, now))
    same_as_reference(a, rng, now + 3600.0)
    assert_columns_match_database(a)
    assert b.forget(now=now + 86400.0 * 40, threshold=0.05, strength_hours=24.0 * 20) and len(b) > 50
    same_as_reference(a, rng, now + 86400.0 * 40)
    assert_columns_match_database(a)
    a.mark_accessed([5, 5, 7], now=now)   # a's own count after b's: mirrored only once a has read b's
    assert_columns_match_database(a)
    a.close()
    b.close()


def test_a_search_reads_only_the_rows_it_returns(tmp_path):
    """Scoring reads no memory rows: the SQL a vector search runs touches `memories` once, for its k hits."""
    rng = np.random.default_rng(2)
    store = MemoryStore(tmp_path / "m", encoder=FakeEncoder(), index="flat", exhaustive_below=0, n_candidates=40,
                        update_access=False)
    store.add_many(items(rng, 300, T0))
    q = store._encode_texts(["the dog in the park"], "q")[0]
    weights = {"relevance": 1, "recency": 1, "frequency": 1, "saliency": 1, "neighbours": 0.5, "episode": 1}
    store.search(query_vector=q, k=5, weights=weights, now=T0 + 86400.0 * 200)   # loads the columns
    seen: list[str] = []
    store.db.set_trace_callback(seen.append)
    hits = store.search(query_vector=q, k=5, weights=weights, now=T0 + 86400.0 * 200)
    store.db.set_trace_callback(None)
    reads = [s for s in seen if "FROM memories" in s]
    assert len(hits) == 5 and len(reads) == 1 and reads[0].startswith(f"SELECT {MemoryStore._COLS} FROM memories")
    store.close()
