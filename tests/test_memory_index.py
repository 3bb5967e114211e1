"""The memory store's FAISS indexes, pca_hnsw in particular: config checks, build, recall against flat on a small
fixed synthetic set, filtered search, save / load with its sidecar, and the rebuild from SQLite.

    pytest tests/test_memory_index.py -q
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmemory.bench.memory import anisotropic
from mmemory.config import ConfigError
from mmemory.memory import IndexConfig, MemoryStore
from mmemory.memory.index import VectorIndex, sidecar, train_size, uncentred_projection
from mmemory.memory.store import INDEX_NAME

DIM = 64
PCA = IndexConfig(type="pca_hnsw", pca_dim=32, pca_train=500, refine_factor=4, ef_search=64, ef_construction=80)


def vectors(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors with a power-law spectrum around a shared direction (the benchmark's hard distribution)."""
    rng = np.random.default_rng(seed)
    d = np.random.default_rng(99).standard_normal(DIM).astype(np.float32)
    return anisotropic(rng, n, DIM, alpha=1.0, mean_share=0.27, mean_dir=d / np.linalg.norm(d))


def recall_at_10(index: VectorIndex, x: np.ndarray, ids: np.ndarray, queries: np.ndarray) -> float:
    hits = 0
    for q in queries:
        exact = set(ids[np.argsort(-(x @ q))[:10]].tolist())
        hits += len(exact & set(index.search(q, 10)[1].tolist()))
    return hits / (10 * len(queries))


@pytest.mark.parametrize("bad, match", [
    ({"type": "pca_hnsw", "pca_dim": 0}, "pca_dim=0 must be >= 1"),
    ({"refine_factor": 0}, "refine_factor=0"),
    ({"pca_dim": 128, "pca_train": 100}, "pca_train=100 vectors cannot estimate pca_dim=128"),
    ({"ivf_quantizer": "pq"}, "ivf_quantizer 'pq' is unknown"),
    ({"type": "pca-hnsw"}, "pca_hnsw"),
    ({"hnsw_m": 1}, "hnsw_m=1 must be >= 2"),
])
def test_bad_index_settings_are_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        IndexConfig.from_dict(bad)


def test_uncentred_projection_keeps_the_shared_direction():
    """The projection's rows are orthonormal and its top row is the shared mean direction (a centred PCA's is not)."""
    x = vectors(4000)
    proj = uncentred_projection(x, 8)
    import faiss

    a = faiss.vector_to_array(proj.A).reshape(8, DIM)
    assert np.allclose(a @ a.T, np.eye(8), atol=1e-4)
    mu = x.mean(0) / np.linalg.norm(x.mean(0))
    assert abs(a[0] @ mu) > 0.95
    with pytest.raises(ValueError, match="pca_dim=64 must be between 1 and the embedding dimension 64"):
        uncentred_projection(x, DIM)


def test_pca_hnsw_builds_and_matches_flat_recall():
    """On 3,000 vectors the projected graph with exact re-ranking finds >= 0.95 of flat's top 10, and its scores are
    the exact cosines; below pca_train it is a flat index."""
    x, q = vectors(3000), vectors(50, seed=1)
    ids = np.arange(7, 3007, dtype=np.int64)   # the store's vector ids need not start at 0
    small = VectorIndex(DIM, PCA)
    small.rebuild(ids[:400], x[:400], generation=1)
    assert small.kind == "flat" and train_size(PCA) == 500
    index = VectorIndex(DIM, PCA)
    index.rebuild(ids, x, generation=1)
    assert index.kind == "pca_hnsw" and index.ntotal == 3000
    flat = VectorIndex(DIM, IndexConfig(type="flat"))
    flat.rebuild(ids, x, generation=1)
    assert recall_at_10(flat, x, ids, q) == 1.0
    assert recall_at_10(index, x, ids, q) >= 0.95
    scores, got = index.search(q[0], 10)
    assert np.allclose(scores, x[got - 7] @ q[0], atol=1e-5)   # exact inner products, best first
    assert list(scores) == sorted(scores, reverse=True)
    # the search settings act at search time on the same graph: fewer candidates, no better recall
    narrow = VectorIndex(DIM, IndexConfig(**{**PCA.__dict__, "ef_search": 10, "refine_factor": 1}))
    narrow.index, narrow.kind = index.index, index.kind
    assert recall_at_10(narrow, x, ids, q) < recall_at_10(index, x, ids, q)


def test_pca_hnsw_filtered_search_returns_only_allowed_ids():
    x = vectors(2000)
    ids = np.arange(1000, 3000, dtype=np.int64)
    index = VectorIndex(DIM, PCA)
    index.rebuild(ids, x, generation=1)
    allowed = ids[::5]
    for qi in range(10):
        scores, got = index.search(x[qi * 3], 10, allowed)
        assert len(got) == 10 and np.isin(got, allowed).all()
        exact = allowed[np.argsort(-(x[allowed - 1000] @ x[qi * 3]))[:10]]
        assert len(set(exact.tolist()) & set(got.tolist())) >= 8


def test_pca_hnsw_save_load_and_sidecar(tmp_path):
    """Saved with its settings in the sidecar; loaded when they match; a changed build setting (pca_dim) is a
    rebuild, a changed search setting (ef_search) is not."""
    x = vectors(1500)
    ids = np.arange(len(x), dtype=np.int64)
    index = VectorIndex(DIM, PCA)
    index.rebuild(ids, x, generation=3)
    path = tmp_path / "index.faiss"
    index.save(path)
    meta = json.loads(sidecar(path).read_text())
    assert meta["kind"] == "pca_hnsw" and meta["config"]["pca_dim"] == 32 and meta["generation"] == 3
    again = VectorIndex.load(path, DIM, PCA)
    assert again is not None and again.kind == "pca_hnsw" and again.generation == 3
    assert np.array_equal(again.search(x[0], 10)[1], index.search(x[0], 10)[1])
    assert VectorIndex.load(path, DIM, IndexConfig(**{**PCA.__dict__, "ef_search": 128})) is not None
    assert VectorIndex.load(path, DIM, IndexConfig(**{**PCA.__dict__, "pca_dim": 16})) is None
    assert VectorIndex.load(path, DIM, IndexConfig(type="hnsw")) is None


def test_store_trains_pca_hnsw_at_pca_train_and_rebuilds_it_from_sqlite(tmp_path):
    """A store with pca_hnsw stays flat (exact) below pca_train, switches to the graph when it gets there, finds
    each stored vector as its own nearest memory, and rebuilds the same index from SQLite after the file is lost."""
    x = vectors(1200)
    with MemoryStore(tmp_path / "mem", dim=DIM, index=PCA, exhaustive_below=0, n_candidates=20) as s:
        first = s.add_many([{"text": f"m{i}", "vector": v, "saliency": 5} for i, v in enumerate(x[:400])])
        s.search(query_vector=x[0], k=1, weights={"relevance": 1})
        assert s._index.kind == "flat"
        ids = first + s.add_many([{"text": f"m{i}", "vector": v, "saliency": 5} for i, v in enumerate(x[400:], 400)])
        hits = s.search(query_vector=x[700], k=1, weights={"relevance": 1})
        assert s._index.kind == "pca_hnsw" and s._index.ntotal == 1200
        assert hits[0].memory.id == ids[700] and hits[0].raw["relevance"] == pytest.approx(1.0, abs=1e-5)
        s.add_many([{"text": "late", "vector": x[5] * 0.9 + x[6] * 0.1, "saliency": 5}])  # appended to the graph
        assert s.search(query_vector=x[5], k=2, weights={"relevance": 1})[1].memory.text == "late"
        assert s._index.ntotal == 1201
    (tmp_path / "mem" / INDEX_NAME).unlink()
    with MemoryStore(tmp_path / "mem", dim=DIM, index=PCA, exhaustive_below=0, n_candidates=20) as s:
        hits = s.search(query_vector=x[900], k=1, weights={"relevance": 1})
        assert s.rebuilds == 1 and s._index.kind == "pca_hnsw" and s._index.ntotal == 1201
        assert hits[0].memory.id == ids[900]
        # a session filter reaches the graph through the id map
        got = s.search(query_vector=x[900], k=5, weights={"relevance": 1}, session="nope")
        assert got == []
