"""FAISS vector index of a memory store: flat, HNSW or IVF-PQ over normalised vectors (inner product = cosine).

The index is a cache of the `vectors` table in SQLite: it can always be rebuilt from the database. Its ids are the
database's `vector_id`s. It is saved atomically beside the database with a small JSON sidecar that records the
database generation it reflects, so that a store opened later can tell whether the index is out of step, and a
blake2b checksum of the index file, so that a damaged file (even one that keeps its size) is never trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from mmemory.config import ConfigError, StrictConfig

logger = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "hnsw", "ivfflat", "ivfpq")
CHECKSUM = "blake2b"            # the sidecar's checksum of the index file (hashlib name, 32-byte digest)


def file_checksum(path: str | Path, fsync: bool = False) -> str:
    """Hex blake2b (32-byte digest) of a file's bytes, read in 1 MiB chunks; `fsync` also flushes it to disk."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
        if fsync:
            os.fsync(f.fileno())
    return h.hexdigest()


@dataclass
class IndexConfig(StrictConfig):
    """How the FAISS index is built: config memory.index (defaults: config.yaml's; each sane for a few thousand to a
    few million items)."""

    SECTION = "memory.index"

    type: str = "flat"          # flat (exact) | hnsw (graph) | ivfflat (clustered lists, full vectors; fast to build)
    #                             | ivfpq (clustered lists, compressed codes: the smallest index for very large stores)
    hnsw_m: int = 32            # HNSW: neighbours per node
    ef_construction: int = 80   # HNSW: build-time beam width
    ef_search: int = 64         # HNSW: search-time beam width (recall vs latency)
    ivf_nlist: int = 1024       # IVF: number of coarse clusters
    pq_m: int = 64              # IVF-PQ: sub-quantisers (must divide the dimension)
    nprobe: int = 16            # IVF: clusters visited per search
    min_train: int = 40         # IVF: train once nlist * min_train vectors exist (on that many); until then flat
    kmeans_niter: int = 25      # IVF: k-means iterations of the coarse quantiser (faiss' default)
    ivf_quantizer: str = "flat"  # IVF: how a vector finds its lists: flat (exact) or hnsw (faster for large nlist)

    def __post_init__(self):
        super().__post_init__()
        if self.type not in INDEX_TYPES:
            raise ConfigError(f"config {self.SECTION}: type {self.type!r} is unknown; use one of "
                              f"{', '.join(INDEX_TYPES)}")


def train_size(cfg: IndexConfig) -> int:
    """Vectors an IVF index trains on (and waits for): min_train per list (PQ: per 256 codes, at least)."""
    return (max(cfg.ivf_nlist, 256) if cfg.type == "ivfpq" else cfg.ivf_nlist) * cfg.min_train


def _new_index(dim: int, cfg: IndexConfig, train: np.ndarray | None) -> tuple[faiss.Index, str]:
    """An empty id-mapped index; returns it and the kind actually built (ivfpq falls back to flat when too small)."""
    if cfg.type == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = cfg.ef_construction
        inner.hnsw.efSearch = cfg.ef_search
        return faiss.IndexIDMap2(inner), "hnsw"
    if cfg.type in ("ivfpq", "ivfflat") and train is not None and len(train) >= train_size(cfg):
        if cfg.ivf_quantizer == "hnsw":  # k-means runs on a flat index; the centroids then go into the graph
            quantizer = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            quantizer.hnsw.efSearch = max(64, 2 * cfg.nprobe)
        elif cfg.ivf_quantizer == "flat":
            quantizer = faiss.IndexFlatIP(dim)
        else:
            raise ValueError(f"memory index: ivf_quantizer {cfg.ivf_quantizer!r} is unknown; use flat or hnsw")
        if cfg.type == "ivfflat":
            inner = faiss.IndexIVFFlat(quantizer, dim, cfg.ivf_nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            if dim % cfg.pq_m:
                raise ValueError(f"memory index: pq_m={cfg.pq_m} must divide the embedding dimension {dim}")
            inner = faiss.IndexIVFPQ(quantizer, dim, cfg.ivf_nlist, cfg.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        n_train = min(len(train), train_size(cfg))  # k-means needs ~40 points per centroid, not more
        sample = train[np.random.default_rng(0).choice(len(train), n_train, replace=False)] \
            if n_train < len(train) else train
        logger.info("training %s (nlist=%d) on %d of %d vectors", cfg.type, cfg.ivf_nlist, n_train, len(train))
        inner.cp.niter = cfg.kmeans_niter
        if cfg.ivf_quantizer == "hnsw":
            inner.clustering_index = faiss.IndexFlatIP(dim)
        inner.train(np.ascontiguousarray(sample, dtype=np.float32))
        inner.nprobe = cfg.nprobe
        return faiss.IndexIDMap2(inner), cfg.type
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "flat"


class VectorIndex:
    """A FAISS index keyed by vector id, plus the database generation it reflects."""

    def __init__(self, dim: int, cfg: IndexConfig):
        self.dim, self.cfg = dim, cfg
        self.index, self.kind = _new_index(dim, cfg, None)
        self.generation = -1        # database generation this index reflects (-1: none yet)
        self.max_vector_id = 0      # largest vector id in the index (appends above it can be caught up)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def rebuild(self, ids: np.ndarray, vecs: np.ndarray, generation: int) -> None:
        """Replace the index with these vectors (trains IVF-PQ when there are enough)."""
        self.index, self.kind = _new_index(self.dim, self.cfg, vecs if len(vecs) else None)
        self.max_vector_id = 0
        self.add(ids, vecs)
        self.generation = generation

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self.max_vector_id = max(self.max_vector_id, int(np.max(ids)))

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, vector ids) for one query; `allowed` restricts the search to these vector ids."""
        k = min(k, self.ntotal)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        params = None
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            if self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.cfg.ef_search, k))
            elif self.kind in ("ivfpq", "ivfflat"):
                params = faiss.SearchParametersIVF(sel=sel, nprobe=self.cfg.nprobe)
            else:
                params = faiss.SearchParameters(sel=sel)
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.cfg.ef_search, k))
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: OpenMP threads only add hand-off latency (worse on a busy machine)
        try:
            scores, ids = self.index.search(np.ascontiguousarray(q.reshape(1, -1), dtype=np.float32), k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    # --- persistence -------------------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write index + sidecar atomically (temp file, then rename): a kill never leaves a half-written index.

        The sidecar, written after the index, holds the index file's checksum: an index without a matching sidecar
        (a kill between the two renames, two processes saving at once, a damaged disk) is rebuilt when opened.
        """
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            digest = file_checksum(tmp, fsync=True)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        meta = {"generation": self.generation, "ntotal": self.ntotal, "max_vector_id": self.max_vector_id,
                "kind": self.kind, "dim": self.dim, "config": asdict(self.cfg), CHECKSUM: digest}
        from mmemory.io import atomic_write_json

        atomic_write_json(sidecar(path), meta)

    @classmethod
    def load(cls, path: Path, dim: int, cfg: IndexConfig) -> "VectorIndex | None":
        """The saved index, or None when it is missing, unreadable or built with other settings."""
        path = Path(path)
        if not path.exists() or not sidecar(path).exists():
            return None
        try:
            meta = json.loads(sidecar(path).read_text())
            want = meta.get(CHECKSUM)
            if not want:
                logger.warning("memory index %s has no checksum in %s (an older version wrote it); rebuilding it "
                               "from the database", path, sidecar(path).name)
                return None
            got = file_checksum(path)
            if got != want:  # another process may be saving (its index is renamed in before its sidecar): re-read
                again = json.loads(sidecar(path).read_text())
                if again.get(CHECKSUM) not in (None, want):
                    meta, want = again, again[CHECKSUM]
                    got = file_checksum(path)
            if got != want:
                logger.warning("memory index %s fails its checksum (%s %s..., sidecar says %s...): the file is "
                               "damaged or was replaced without its sidecar; rebuilding it from the database",
                               path, CHECKSUM, got[:12], str(want)[:12])
                return None
            index = faiss.read_index(str(path))
        except Exception as e:  # a torn or foreign file: the database is the truth, rebuild from it
            logger.warning("memory index %s is unreadable (%s); it will be rebuilt from the database", path, e)
            return None
        if meta.get("dim") != dim or meta.get("config", {}).get("type") != cfg.type or index.ntotal != meta.get("ntotal"):
            logger.warning("memory index %s does not match its sidecar or the configured settings; rebuilding", path)
            return None
        self = cls(dim, cfg)
        self.index, self.kind = index, meta["kind"]
        self.generation, self.max_vector_id = int(meta["generation"]), int(meta["max_vector_id"])
        if self.kind in ("ivfpq", "ivfflat"):
            faiss.extract_index_ivf(self.index.index).nprobe = cfg.nprobe
        return self


def sidecar(path: Path) -> Path:
    return Path(str(path) + ".json")
