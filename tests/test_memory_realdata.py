"""The memory evaluation on real-benchmark-shaped data, synthetic: per-session turn ids, leave-one-session-out
tuning that never sees the scored session, and a frequency component that cannot feed on its own retrievals.

    python -m pytest -q tests/test_memory_realdata.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder  # noqa: E402

from mmemory.io import read_jsonl  # noqa: E402,F401
from mmemory.memory import evaluate as ev  # noqa: E402
from mmemory.memory.store import MemoryStore  # noqa: E402

TOPICS = ["hiking trip mountains", "pottery class clay", "adoption agency papers", "guitar concert tickets",
          "painting sunrise lake", "job interview bakery", "marathon training shoes", "camping tent rain"]


def conversation(sid: str, names: tuple[str, str], shift: int) -> tuple[list[dict], list[dict]]:
    """Two speakers, 24 turns over 4 days; ids D<day>:<n> repeat across conversations, as LoCoMo's dia_ids do."""
    turns, queries = [], []
    for n in range(24):
        day, topic = n // 6 + 1, TOPICS[(n + shift) % len(TOPICS)]
        turns.append({"session_id": sid, "turn_id": f"D{day}:{n % 6 + 1}", "speaker": names[n % 2],
                      "timestamp": f"2023-05-{day + 1:02d}T10:{n:02d}:00", "text": f"I went on about my {topic} (day {day}, point {n})"})
    for j, n in enumerate((1, 8, 14, 21)):
        t = turns[n]
        queries.append({"query_id": f"{sid}-q{j}", "session_id": sid, "timestamp": "2023-05-09T10:00:00",
                        "question": f"What did {t['speaker']} say about the {TOPICS[(n + shift) % len(TOPICS)].split()[-1]}?",
                        "evidence": [t["turn_id"]], "type": "single-hop" if j % 2 else "multi-hop"})
    return turns, queries


def data():
    turns, queries = [], []
    for i, (sid, names) in enumerate([("c1", ("Ann", "Bob")), ("c2", ("Cem", "Dia")), ("c3", ("Eve", "Fay"))]):
        t, q = conversation(sid, names, i)
        turns += t
        queries += q
    return turns, queries


def write(tmp_path, turns, queries):
    import json

    for name, rows in (("turns", turns), ("queries", queries)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "turns.jsonl", tmp_path / "queries.jsonl"


def test_turn_ids_are_unique_only_within_their_session(tmp_path):
    turns, queries = data()
    assert len({t["turn_id"] for t in turns}) < len(turns)       # "D1:1" in every conversation
    t, q = ev.load_sessions(*write(tmp_path, turns, queries))
    res = ev.evaluate(t, q, FakeEncoder(), {"relevance": {"relevance": 1.0}}, tmp_path / "w")
    # each evidence id resolves inside the query's own conversation only
    assert res["methods"]["relevance"]["queries"] == len(queries)
    dup = dict(turns[1], text="again")
    with pytest.raises(ev.MemoryInputError, match="unique within their session"):
        ev.load_sessions(*write(tmp_path, turns + [dup], queries))
    other = dict(queries[0], evidence=["D9:9"])
    with pytest.raises(ev.MemoryInputError, match="not a turn of its session 'c1'"):
        ev.load_sessions(*write(tmp_path, turns, [other]))


def test_loo_never_tunes_on_the_scored_session(tmp_path, monkeypatch):
    """Nested LOO: while a session is scored, every weight search (the inner LOO that picks the procedure, and the
    final ascent) sees only the other sessions; the inner LOO holds out each of those in turn."""
    turns, queries = data()
    t, q = ev.load_sessions(*write(tmp_path, turns, queries))
    recorded = ev.record(t, q, FakeEncoder(), tmp_path / "w")
    seen: dict[str, list[set]] = {}
    current = ["all"]
    real_ascend, real_nested = ev.ascend, ev.tune_nested

    def spy_ascend(train, *a, **kw):
        seen.setdefault(current[0], []).append({r["session_id"] for r in train})
        return real_ascend(train, *a, **kw)

    def spy_nested(train, *a, **kw):
        sessions = {r["session_id"] for r in train}
        current[0] = ({"c1", "c2", "c3"} - sessions).pop() if len(sessions) < 3 else "all"
        return real_nested(train, *a, **kw)

    monkeypatch.setattr(ev, "ascend", spy_ascend)
    monkeypatch.setattr(ev, "tune_nested", spy_nested)
    per_query, folds = ev.tune_loo(recorded)
    assert set(folds) == {"c1", "c2", "c3", "all"}
    for sid in ("c1", "c2", "c3"):
        others = {"c1", "c2", "c3"} - {sid}
        assert all(s <= others for s in seen[sid]), (sid, seen[sid])
        # inner LOO: each procedure tunes on one of the two others; then the chosen one on both
        assert sorted(map(sorted, seen[sid])) == sorted([[x] for x in others] * len(ev.PROCEDURES) + [sorted(others)])
        assert folds[sid]["procedure"] in ev.PROCEDURES and sid not in folds[sid]["sessions"]
    assert [r["query_id"] for r in per_query] == [r["query_id"] for r in recorded if r["session_id"] == "c1"] + \
        [r["query_id"] for r in recorded if r["session_id"] == "c2"] + \
        [r["query_id"] for r in recorded if r["session_id"] == "c3"]


def test_nested_loo_never_starts_from_the_shipped_default(tmp_path, monkeypatch):
    """The shipped default was chosen on data: the nested procedure's figures must not depend on it."""
    t, q = ev.load_sessions(*write(tmp_path, *data()))
    recorded = ev.record(t, q, FakeEncoder(), tmp_path / "w")
    before = ev.tune_loo(recorded)
    odd = {"relevance": 1.0, "lexical": 2.0, "speaker": 1.0, "episode": 1.0}
    monkeypatch.setattr(ev, "DEFAULT_WEIGHTS", odd)
    monkeypatch.setattr("mmemory.memory.scoring.DEFAULT_WEIGHTS", odd)
    after = ev.tune_loo(recorded)
    assert [r["ranks"] for r in before[0]] == [r["ranks"] for r in after[0]]
    assert {k: f["weights"] for k, f in before[1].items()} == {k: f["weights"] for k, f in after[1].items()}
    assert all(start != odd for start, _ in ev.PROCEDURES.values())


def test_frequency_cannot_feed_on_its_own_retrievals(tmp_path):
    """With a huge frequency weight, the memories counted as accessed are exactly those a frequency-free search
    returns: a memory retrieved only because it was retrieved before is never counted again."""
    enc = FakeEncoder()
    stores = {}
    for name, w in (("greedy", {"relevance": 1.0, "frequency": 50.0}), ("plain", {"relevance": 1.0})):
        s = MemoryStore(tmp_path / name, encoder=enc, weights=w)
        for n, topic in enumerate(TOPICS):
            s.add(f"my {topic}", session="s", timestamp=1000.0 + n)
        stores[name] = s
    s = stores["greedy"]
    s.mark_accessed([1], now=2000.0)                   # one confirmed access of the hiking memory
    stores["plain"].mark_accessed([1], now=2000.0)
    for topic in TOPICS[1:] * 3:
        for st in stores.values():
            st.search(query_text=topic.split()[0], k=1, now=3000.0)
    counts = {name: [m.access_count for m in st.memories()] for name, st in stores.items()}
    assert counts["greedy"] == counts["plain"]        # the frequency weight changed no count
    assert counts["greedy"][0] == 1                   # the hiking memory: never re-counted by its own frequency
    # but frequency does rank: the greedy store returns the much-accessed memories first
    assert s.search(query_text="pottery", k=1, update_access=False)[0].memory.access_count >= 1
    for st in stores.values():
        st.close()


def test_simulated_methods_equal_a_real_replay(tmp_path):
    """evaluate() scores every method from one recording: it must equal replaying each through a store."""
    turns, queries = data()
    t, q = ev.load_sessions(*write(tmp_path, turns, queries))
    enc = FakeEncoder()
    recorded = ev.record(t, q, enc, tmp_path / "rec")
    for w in ({"relevance": 1.0, "frequency": 0.5}, {"relevance": 1.0, "lexical": 1.0, "neighbours": 0.5,
                                                       "frequency": 0.25, "recency": 0.1}):
        real = ev.replay(t, q, enc, w, tmp_path / "real")
        sim = ev.simulate(recorded, w)
        assert [sorted(r["ranks"], key=lambda x: (x is None, x)) for r in real] == \
               [sorted(r["ranks"], key=lambda x: (x is None, x)) for r in sim]
    assert np.isfinite(ev.summarise(sim)["mrr"])
