"""MemoryStore: storage, scoring, index types, bad input, forgetting, CLI.

    pytest tests/test_memory_store.py -q
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder  # noqa: E402

from mmemory.memory import IndexConfig, MemoryInputError, MemoryStore  # noqa: E402
from mmemory.memory.scoring import check_weights, combine, recency  # noqa: E402
from mmemory.memory.store import INDEX_NAME, heuristic_saliency  # noqa: E402

T0 = "2024-01-01T00:00:00Z"


def hours(h: float) -> float:
    return 1704067200.0 + 3600.0 * h  # T0 + h hours, as unix seconds


@pytest.fixture
def store(tmp_path):
    s = MemoryStore(tmp_path / "mem", encoder=FakeEncoder())
    yield s
    s.close()


def test_scoring_primitives():
    assert np.allclose(recency(np.array([0.0, 24.0, 48.0]), 24.0), [1.0, 0.5, 0.25])
    score, norm = combine({"relevance": np.array([0.2, 0.9]), "recency": np.array([1.0, 0.0])},
                          {"relevance": 1.0, "recency": 0.5})
    # similarities are z-scored over the candidates, priors keep their own [0, 1] scale
    assert np.allclose(score, [-0.5, 1.0]) and np.allclose(norm["recency"], [1.0, 0.0])
    # neighbours: a turn also scores by its best adjacent candidate (-1: none)
    score, _ = combine({"relevance": np.array([0.0, 1.0, 0.0])}, {"relevance": 1.0, "neighbours": 0.5},
                       (np.array([-1, 0, 1]), np.array([1, 2, -1])))
    z = np.array([-1.0, 2.0, -1.0]) / np.sqrt(2)
    assert np.allclose(score, z + 0.5 * np.array([z[1], z[2], z[1]]))
    with pytest.raises(ValueError, match="unknown scoring component"):
        check_weights({"relevence": 1})
    with pytest.raises(ValueError, match="all zero"):
        check_weights({"relevance": 0})


def test_add_search_returns_components_and_persists(tmp_path):
    path = tmp_path / "mem"
    with MemoryStore(path, encoder=FakeEncoder()) as s:
        a = s.add("the red circle is at the top left", session="s1", timestamp=hours(0), speaker="assistant")
        s.add("the blue square is in the center", session="s1", timestamp=hours(1))
        hits = s.search(query_text="where is the red circle", now=hours(2), k=2, weights={"relevance": 1})
        assert hits[0].memory.id == a
        assert set(hits[0].components) >= {"relevance", "recency", "frequency", "saliency"}
        assert hits[0].raw["relevance"] > hits[1].raw["relevance"]
        assert hits[0].memory.timestamp == "2024-01-01T00:00:00Z" and hits[0].memory.speaker == "assistant"
    with MemoryStore(path, encoder=FakeEncoder()) as s:  # reopened: memories, access counts and index survive
        assert len(s) == 2
        assert s.get(a).access_count == 1 and s.get(a).last_access is not None
        assert s.check_index()["in_step"]
        assert s.search(query_text="red circle", k=1, weights={"relevance": 1})[0].memory.id == a


def test_recency_breaks_a_relevance_tie(store):
    old = store.add("we talked about the red circle", session="s", timestamp=hours(0))
    new = store.add("we talked about the red circle", session="s", timestamp=hours(10))
    q = dict(query_text="red circle", now=hours(12), k=2, update_access=False)
    assert store.search(**q, weights={"relevance": 1, "recency": 1})[0].memory.id == new
    # half-life in turns: the later turn is the more recent one too
    store.recency_unit = "turns"
    hits = store.search(**q, weights={"recency": 1})
    assert hits[0].memory.id == new and hits[0].raw["recency"] > hits[1].raw["recency"]
    assert store.get(old).access_count == 0  # update_access=False


def test_frequency_counts_retrievals(store):
    a = store.add("alpha fact", session="s", timestamp=hours(0))
    b = store.add("beta fact", session="s", timestamp=hours(0))
    for _ in range(3):
        store.search(query_text="alpha", k=1, weights={"relevance": 1})
    assert store.get(a).access_count == 3 and store.get(b).access_count == 0
    hits = store.search(query_text="fact", k=2, weights={"frequency": 1}, update_access=False)
    assert hits[0].memory.id == a and math.isclose(hits[0].raw["frequency"], math.log(4) / (1 + math.log(4)))
    no_update = MemoryStore(store.path, encoder=FakeEncoder(), update_access=False)
    no_update.search(query_text="alpha", k=1)
    assert no_update.get(a).access_count == 3


def test_saliency_heuristic_and_rater(tmp_path, store):
    img = tmp_path / "dog.png"
    img.write_bytes(b"\x89PNG fake")
    first = store.add("the weather is nice", session="s", timestamp=hours(0))
    repeat = store.add("the weather is nice", session="s", timestamp=hours(1))
    picture = store.add("look", session="s", image=str(img), caption="a brown dog", timestamp=hours(2))
    s = {m: store.get(m).saliency for m in (first, repeat, picture)}
    assert s[first] == pytest.approx(heuristic_saliency(1.0, False))  # first memory: fully novel
    assert s[repeat] < s[first]  # a repeat is not novel
    assert s[picture] > s[repeat] and 1 <= min(s.values()) <= max(s.values()) <= 10
    rated = MemoryStore(tmp_path / "rated", encoder=FakeEncoder(), saliency_fn=lambda t, c, i: 7.0)
    assert rated.get(rated.add("x")).saliency == 7.0
    bad = MemoryStore(tmp_path / "bad", encoder=FakeEncoder(), saliency_fn=lambda t, c, i: 42)
    with pytest.raises(MemoryInputError, match="1..10"):
        bad.add("x")


def test_images_and_captions_share_the_space(tmp_path, store):
    img = tmp_path / "shapes.png"
    img.write_bytes(b"png")
    (tmp_path / "shapes.png.txt").write_text("a green triangle")
    store.add("unrelated chatter about lunch", session="s", timestamp=hours(0))
    pic = store.add("look at this", session="s", image=str(img), timestamp=hours(1))
    assert store.search(query_text="green triangle", k=1, weights={"relevance": 1})[0].memory.id == pic
    assert store.search(query_image=str(img), k=1, weights={"relevance": 1})[0].memory.id == pic


def test_session_and_before_filters(store):
    store.add("red circle", session="a", timestamp=hours(0))
    b = store.add("red circle", session="b", timestamp=hours(0))
    store.add("red circle later", session="b", timestamp=hours(5))
    hits = store.search(query_text="red circle", session="b", before=hours(5), k=10)
    assert [h.memory.id for h in hits] == [b]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfflat", "ivfpq"])
def test_index_types_find_the_nearest(tmp_path, kind):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(600, 16)).astype(np.float32)
    cfg = IndexConfig(type=kind, ivf_nlist=4, pq_m=4, min_train=40 if kind == "ivfflat" else 2, nprobe=4)
    with MemoryStore(tmp_path / kind, dim=16, index=cfg, exhaustive_below=0, n_candidates=50) as s:
        ids = s.add_many([{"text": f"m{i}", "vector": v, "saliency": 5} for i, v in enumerate(vecs)])
        hits = s.search(query_vector=vecs[123], k=1, weights={"relevance": 1})
        assert hits[0].memory.id == ids[123] and hits[0].raw["relevance"] == pytest.approx(1.0, abs=1e-5)
        assert s._index.kind == kind  # the IVF indexes were trained (600 >= 4 * 40, 256 * 2)


def test_bad_input_gives_clear_errors(tmp_path, store):
    with pytest.raises(MemoryInputError, match="text is empty"):
        store.add("   ", session="s")
    with pytest.raises(FileNotFoundError, match="nope.png does not exist"):
        store.add("look", image=str(tmp_path / "nope.png"))
    with pytest.raises(MemoryInputError, match="dimension 3"):
        store.add("x", vector=[1.0, 2.0, 3.0])
    with pytest.raises(MemoryInputError, match="NaN"):
        store.add("x", vector=[float("nan")] * 64)
    with pytest.raises(MemoryInputError, match="all zeros"):
        store.add("x", vector=[0.0] * 64)
    with pytest.raises(MemoryInputError, match="exactly one"):
        store.search(k=3)
    with pytest.raises(MemoryInputError, match="empty"):
        store.search(query_text="  ")
    with pytest.raises(MemoryInputError, match="ISO 8601"):
        store.add("x", timestamp="yesterday-ish")
    assert len(store) == 0  # nothing half-added
    with pytest.raises(MemoryInputError, match="holds 64-d vectors"):
        MemoryStore(store.path, dim=8)


def test_out_of_step_index_is_detected_and_rebuilt(tmp_path):
    path = tmp_path / "mem"
    with MemoryStore(path, encoder=FakeEncoder()) as s:
        for i in range(5):
            s.add(f"memory number {i}", timestamp=hours(i))
    assert (path / INDEX_NAME).exists()
    # 1. a writer commits and dies before saving the index: the saved index is one memory behind
    crashed = MemoryStore(path, encoder=FakeEncoder())
    late = crashed.add("a late memory about zebras", timestamp=hours(9))
    crashed.db.close()  # no flush: as if killed
    s = MemoryStore(path, encoder=FakeEncoder(), exhaustive_below=0)  # search through the index
    report = s.check_index()
    assert not report["in_step"] and report["vectors_in_index"] == 5 and report["vectors_in_db"] == 6
    assert s.search(query_text="zebras", k=1, weights={"relevance": 1}, update_access=False)[0].memory.id == late
    assert s.check_index()["in_step"]
    s.close()
    # 2. the database changed behind the index's back (same generation, fewer vectors): rebuilt on open
    import sqlite3

    with sqlite3.connect(path / "memory.sqlite") as db:
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("DELETE FROM memories WHERE text = 'a late memory about zebras'")
    with MemoryStore(path, encoder=FakeEncoder(), exhaustive_below=0) as s2:
        hits = s2.search(query_text="zebras", k=10, weights={"relevance": 1})
        assert late not in [h.memory.id for h in hits] and len(hits) == 5
        assert s2._index.ntotal == 5
    # 3. a corrupt index file is rebuilt from the database
    (path / INDEX_NAME).write_bytes(b"garbage")
    with MemoryStore(path, encoder=FakeEncoder(), exhaustive_below=0) as s3:
        assert s3.search(query_text="number 3", k=1, weights={"relevance": 1})[0].memory.text == "memory number 3"
        assert s3.check_index()["in_step"]


def test_forget_memorybank_decay(store):
    kept = store.add("often recalled", timestamp=hours(0))
    gone = store.add("never recalled", timestamp=hours(0))
    store.mark_accessed([kept] * 5, now=hours(0))
    dropped = store.forget(now=hours(100), threshold=0.05, strength_hours=24)
    # retention exp(-100/24) = 0.016 < 0.05 is forgotten; exp(-100/(24*6)) = 0.50 stays
    assert dropped == [gone] and len(store) == 1
    assert store.search(query_text="recalled", k=5)[0].memory.id == kept
    assert store.check_index()["in_step"]


def test_missing_store_is_refused_unless_created(tmp_path):
    missing = tmp_path / "typo" / "mem"
    for kw in ({"create": False}, {"readonly": True}):
        with pytest.raises(MemoryInputError, match="does not exist"):
            MemoryStore(missing, encoder=FakeEncoder(), **kw)
    assert not (tmp_path / "typo").exists()
    with MemoryStore(missing, encoder=FakeEncoder()) as s:   # the default creates it
        a = s.add("a fact", timestamp=hours(0))
    with MemoryStore(missing, encoder=FakeEncoder(), create=False) as s:
        assert s.get(a).text == "a fact" and s.check_index()["in_step"]


def test_cli_add_search_stats(tmp_path, monkeypatch, capsys):
    from mmemory.memory import __main__ as cli

    monkeypatch.setattr(cli, "_encoder", lambda args: FakeEncoder())
    path = str(tmp_path / "cli")
    assert cli.main(["add", path, "--text", "the red circle is at the top left", "--session", "s1"]) == 0
    assert cli.main(["add", path, "--text", "lunch was pasta", "--session", "s1"]) == 0
    capsys.readouterr()
    assert cli.main(["search", path, "--text", "red circle", "-k", "1", "--weights", "relevance=1"]) == 0
    hit = json.loads(capsys.readouterr().out.splitlines()[0])
    assert hit["text"] == "the red circle is at the top left" and "relevance" in hit["components"]
    assert cli.main(["stats", path]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["memories"] == 2 and stats["index_in_step"]


def test_ollama_saliency_rater_with_a_fake_client(tmp_path):
    from mmemory.memory.saliency import OllamaSaliencyRater, parse_rating

    class FakeClient:
        def __init__(self, reply):
            self.reply, self.calls = reply, []

        def chat(self, model, messages, stream, options):
            self.calls.append((model, messages))
            return {"message": {"content": self.reply}}

    img = tmp_path / "p.png"
    img.write_bytes(b"png")
    client = FakeClient("Rating: 8")
    store = MemoryStore(tmp_path / "rated", encoder=FakeEncoder(), saliency_fn=OllamaSaliencyRater(client=client))
    mid = store.add("look at my new car", image=str(img), caption="a red car")
    assert store.get(mid).saliency == 8.0
    model, messages = client.calls[0]
    assert model == "gemma3:27b" and "a red car" in messages[0]["content"] and messages[0]["images"]
    assert parse_rating("I'd say 10.") == 10.0
    with pytest.raises(ValueError, match="no rating"):
        parse_rating("very important")
    with pytest.raises(ValueError, match="no rating"):
        MemoryStore(tmp_path / "r2", encoder=FakeEncoder(),
                    saliency_fn=OllamaSaliencyRater(client=FakeClient("dunno"))).add("x")
