"""FAISS vector index of a memory store: flat, HNSW, IVF or a projected graph over normalised vectors (inner product
= cosine).

`pca_hnsw` is the one for large stores (docs/memory.md, "Benchmark"): the vectors are projected onto the top `pca_dim`
eigenvectors of their uncentred second-moment matrix (so inner products keep the direction all embeddings share),
an HNSW graph searches the projected vectors, and `refine_factor` times the asked-for candidates are re-ranked by
their exact inner product with the full vectors, which the index holds (faiss.IndexRefineFlat). Its scores are
therefore exact cosines, like flat's, HNSW's and IVF-flat's.

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

INDEX_TYPES = ("flat", "hnsw", "ivfflat", "ivfpq", "pca_hnsw")
TRAINED_TYPES = ("ivfflat", "ivfpq", "pca_hnsw")   # flat (exact) until train_size(cfg) vectors exist
# the settings that shape a built index (the others apply at search time): a saved index built with other values of
# these is rebuilt when opened
BUILD_KEYS = {"flat": (), "hnsw": ("hnsw_m", "ef_construction"),
              "ivfflat": ("ivf_nlist", "min_train", "kmeans_niter", "ivf_quantizer"),
              "ivfpq": ("ivf_nlist", "pq_m", "min_train", "kmeans_niter", "ivf_quantizer"),
              "pca_hnsw": ("pca_dim", "pca_train", "hnsw_m", "ef_construction")}
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
    """How the FAISS index is built: config memory.index (defaults: config.yaml's, chosen from the recall-vs-latency
    curve in docs/memory.md "Benchmark": exact flat below pca_train vectors, so conversation-sized stores are exact;
    pca_hnsw above, recall@10 0.955 at 1M x 1024 on the hard distribution)."""

    SECTION = "memory.index"

    type: str = "pca_hnsw"      # flat (exact) | hnsw (graph) | ivfflat (clustered lists, full vectors; fast to build)
    #                             | ivfpq (clustered lists, compressed codes: the smallest index for very large stores)
    #                             | pca_hnsw (graph over projected vectors + exact re-ranking; flat below pca_train)
    hnsw_m: int = 32            # HNSW, pca_hnsw: neighbours per node
    ef_construction: int = 200  # HNSW, pca_hnsw: build-time beam width
    ef_search: int = 320        # HNSW, pca_hnsw: search-time beam width (recall vs latency)
    ivf_nlist: int = 1024       # IVF: number of coarse clusters
    pq_m: int = 64              # IVF-PQ: sub-quantisers (must divide the dimension)
    nprobe: int = 16            # IVF: clusters visited per search
    min_train: int = 40         # IVF: train once nlist * min_train vectors exist (on that many); until then flat
    kmeans_niter: int = 25      # IVF: k-means iterations of the coarse quantiser (faiss' default)
    ivf_quantizer: str = "flat"  # IVF: how a vector finds its lists: flat (exact) or hnsw (faster for large nlist)
    pca_dim: int = 64           # pca_hnsw: dimensions the graph sees (top eigenvectors of the uncentred 2nd moment)
    refine_factor: int = 4      # pca_hnsw: graph candidates per asked-for one, re-ranked exactly on the full vectors
    pca_train: int = 10000      # pca_hnsw: learn the projection once this many vectors exist (on that many); flat,
    #                             exact, until then

    def __post_init__(self):
        super().__post_init__()
        if self.type not in INDEX_TYPES:
            raise ConfigError(f"config {self.SECTION}: type {self.type!r} is unknown; use one of "
                              f"{', '.join(INDEX_TYPES)}")
        if self.ivf_quantizer not in ("flat", "hnsw"):
            raise ConfigError(f"config {self.SECTION}: ivf_quantizer {self.ivf_quantizer!r} is unknown; use flat or "
                              "hnsw")
        small = [k for k in ("hnsw_m", "ef_construction", "ef_search", "ivf_nlist", "pq_m", "nprobe", "min_train",
                             "kmeans_niter", "pca_dim", "refine_factor", "pca_train") if getattr(self, k) < 1]
        if small:
            raise ConfigError(f"config {self.SECTION}: {', '.join(f'{k}={getattr(self, k)}' for k in small)} must be "
                              ">= 1")
        if self.hnsw_m < 2:
            raise ConfigError(f"config {self.SECTION}: hnsw_m={self.hnsw_m} must be >= 2")
        if self.pca_train < self.pca_dim:
            raise ConfigError(f"config {self.SECTION}: pca_train={self.pca_train} vectors cannot estimate "
                              f"pca_dim={self.pca_dim} directions; raise pca_train to at least pca_dim (10x is sane)")


def train_size(cfg: IndexConfig) -> int:
    """Vectors a trained index learns from (and waits for): IVF min_train per list (PQ: per 256 codes, at least);
    pca_hnsw pca_train."""
    if cfg.type == "pca_hnsw":
        return cfg.pca_train
    return (max(cfg.ivf_nlist, 256) if cfg.type == "ivfpq" else cfg.ivf_nlist) * cfg.min_train


def uncentred_projection(x: np.ndarray, d_out: int) -> faiss.LinearTransform:
    """x -> A x, with A's rows the top `d_out` eigenvectors of the uncentred second moment E[x x^T].

    Not faiss.PCAMatrix: it subtracts the mean, and the shared direction of sentence embeddings (~27% of a MiniLM
    vector's squared norm) then drops out, although x . mu varies between vectors and moves their inner products
    (measured: recall@10 0.64 with a centred PCA-128 against 0.98 uncentred, 100k x 1024 anisotropic)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not 0 < d_out < x.shape[1]:
        raise ValueError(f"memory index: pca_dim={d_out} must be between 1 and the embedding dimension "
                         f"{x.shape[1] if x.ndim == 2 else '?'} (exclusive); lower memory.index.pca_dim")
    _, vecs = np.linalg.eigh(x.T @ x / len(x))              # ascending eigenvalues
    a = np.ascontiguousarray(vecs[:, ::-1][:, :d_out].T, dtype=np.float32)
    proj = faiss.LinearTransform(x.shape[1], d_out, False)
    faiss.copy_array_to_vector(a.ravel(), proj.A)
    proj.is_trained = True
    return proj


def _sample(train: np.ndarray, n: int) -> np.ndarray:
    """n rows of train (a fixed random subset), or all of them."""
    return train[np.sort(np.random.default_rng(0).choice(len(train), n, replace=False))] if n < len(train) else train


def _new_index(dim: int, cfg: IndexConfig, train: np.ndarray | None) -> tuple[faiss.Index, str]:
    """An empty id-mapped index; returns it and the kind actually built (the trained types fall back to flat while
    there are fewer than train_size(cfg) vectors)."""
    if cfg.type == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = cfg.ef_construction
        inner.hnsw.efSearch = cfg.ef_search
        return faiss.IndexIDMap2(inner), "hnsw"
    if cfg.type == "pca_hnsw" and train is not None and len(train) >= train_size(cfg):
        sample = _sample(train, train_size(cfg))
        logger.info("learning the %d-d projection of pca_hnsw on %d of %d vectors", cfg.pca_dim, len(sample),
                    len(train))
        proj = uncentred_projection(sample, cfg.pca_dim)
        graph = faiss.IndexHNSWFlat(cfg.pca_dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = cfg.ef_construction
        graph.hnsw.efSearch = cfg.ef_search
        inner = faiss.IndexRefineFlat(faiss.IndexPreTransform(proj, graph))
        inner.k_factor = cfg.refine_factor
        return faiss.IndexIDMap2(inner), "pca_hnsw"
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
        if self.kind == "pca_hnsw":
            return self._search_pca_hnsw(q, k, allowed)
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
        return self._search_one(q, k, params)

    def _search_one(self, q: np.ndarray, k: int, params) -> tuple[np.ndarray, np.ndarray]:
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: OpenMP threads only add hand-off latency (worse on a busy machine)
        try:
            scores, ids = self.index.search(np.ascontiguousarray(q.reshape(1, -1), dtype=np.float32), k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def _search_pca_hnsw(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The graph's efSearch and the refine factor travel as nested search parameters (refine -> projection ->
        graph). A filter goes to the graph, which numbers vectors by insertion order, so the vector ids are
        translated through the id map (the id map's own translation only reaches the outermost parameters)."""
        kf = self.cfg.refine_factor
        graph = faiss.SearchParametersHNSW(efSearch=max(self.cfg.ef_search, k * kf))
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            translated = faiss.IDSelectorTranslated(self.index.id_map, sel)
            graph.sel = translated
        projected = faiss.SearchParametersPreTransform(index_params=graph)
        params = faiss.IndexRefineSearchParameters(k_factor=kf, base_index_params=projected)
        return self._search_one(q, k, params)  # the parameter objects above live until the search returns

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
        built = meta.get("config", {})
        other = [k for k in BUILD_KEYS.get(meta.get("kind"), ()) if built.get(k) != getattr(cfg, k)]
        if meta.get("dim") != dim or built.get("type") != cfg.type or index.ntotal != meta.get("ntotal") or other:
            logger.warning("memory index %s does not match its sidecar or the configured settings%s; rebuilding", path,
                           f" (built with {', '.join(f'{k}={built.get(k)}' for k in other)})" if other else "")
            return None
        self = cls(dim, cfg)
        self.index, self.kind = index, meta["kind"]
        self.generation, self.max_vector_id = int(meta["generation"]), int(meta["max_vector_id"])
        if self.kind in ("ivfpq", "ivfflat"):
            faiss.extract_index_ivf(self.index.index).nprobe = cfg.nprobe
        return self


def sidecar(path: Path) -> Path:
    return Path(str(path) + ".json")
