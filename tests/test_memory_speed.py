"""The fast paths of the memory evaluation give exactly the numbers of the plain ones (no timing here: speed is
measured by `python -m mmemory.bench memory` and `memory evaluate`, docs/memory.md).

    python -m pytest -q tests/test_memory_speed.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder  # noqa: E402
from test_memory_realdata import data, write  # noqa: E402

from mmemory.encoders import CachedEncoder  # noqa: E402
from mmemory.memory import evaluate as ev  # noqa: E402
from mmemory.memory.scoring import combine  # noqa: E402
from mmemory.memory.store import MemoryStore  # noqa: E402


def _slow_metric(recorded, weights, metric):
    """The per-query reference: combine(), then the search's order (score, relevance, smaller id)."""
    out = []
    for q in recorded:
        if not q.get("raw"):
            out.append(0.0)
            continue
        score, _ = combine(q["raw"], weights, q["neighbours"], q.get("groups"))
        hit = q["is_evidence"][np.lexsort((q["ids"], -q["raw"]["relevance"], -score))]
        if "@" in metric:
            out.append(hit[:int(metric.split("@")[1])].sum() / len(q["ranks"]))
        else:
            first = np.flatnonzero(hit)
            out.append(1.0 / (first[0] + 1) if len(first) else 0.0)
    return np.array(out)


def test_packed_reranking_equals_combine_per_query(tmp_path):
    t, q = ev.load_sessions(*write(tmp_path, *data()))
    recorded = ev.record(t, q, FakeEncoder(), tmp_path / "rec")
    packed = ev.Packed(recorded)
    rng = np.random.default_rng(0)
    for _ in range(25):
        w = {"relevance": 1.0, **{c: float(rng.choice([0, 0.1, 0.5, 1, 2])) for c in (*ev.TUNE_GRID, "diversity")}}
        for metric in ("recall@1", "recall@5", "mrr"):
            assert np.array_equal(packed.metric(w, metric), _slow_metric(recorded, w, metric)), (w, metric)


def test_recorded_candidates_equal_the_search_hits(tmp_path):
    """record() reads the store's arrays (score_candidates) instead of hits: same order, same raw components."""
    s = MemoryStore(tmp_path / "s", encoder=FakeEncoder(), update_access=False)
    turns, _ = data()
    s.add_many([dict(text=x["text"], session=x["session_id"], speaker=x["speaker"], timestamp=x["timestamp"])
                for x in turns])
    hits = s.search(query_text="What did Ann say about the clay?", session="c1", k=1000)
    scored = s.score_candidates("What did Ann say about the clay?", session="c1")
    ranked = scored.take(scored.order())
    assert [h.memory.id for h in hits] == ranked.ids.tolist()
    for c in hits[0].raw:
        assert np.array_equal(np.array([h.raw[c] for h in hits]), ranked.raw[c]), c
    assert s.accessed(hits, 5) == s.accessed_ids(ranked, 5)


def test_embedding_cache_round_trip_and_encoder_check(tmp_path):
    enc = FakeEncoder()
    enc.fingerprint = "fake:1"
    a = CachedEncoder(enc)
    a.warm(["one", "two"], [])
    ev.save_text_cache(a, tmp_path / "e.npz")
    b = CachedEncoder(enc)
    assert ev.load_text_cache(b, tmp_path / "e.npz") == 2
    assert np.array_equal(b.encode_texts(["two"]), a.encode_texts(["two"]))
    enc.fingerprint = "fake:2"      # other weights: the cache is ignored
    assert ev.load_text_cache(CachedEncoder(enc), tmp_path / "e.npz") == 0


def test_minilm_length_sorted_batches_keep_the_input_order():
    """Batching by token length changes which texts share a batch, never which row belongs to which text."""
    from mmemory.encoders import load_encoder

    enc = load_encoder("minilm", batch_size=2)
    texts = ["a much longer sentence about the pottery class and the clay we used", "hi", "the lake at sunrise",
             "ok", "Caroline: I went to the LGBTQ support group yesterday and it was so powerful"]
    together = enc.encode_texts(texts)
    one_by_one = np.concatenate([enc.encode_texts([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert enc.encode_texts([]).shape == (0, enc.dim)
