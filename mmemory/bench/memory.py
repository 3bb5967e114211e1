"""`python -m mmemory.bench memory --n 1000000 --dim 1024`: the memory store at scale, on synthetic vectors.

Two distributions (`--distribution`):
- `anisotropic` (default, the hard one): a Gaussian with a power-law covariance spectrum (eigenvalue i ~ i^-alpha)
  around a common mean direction, normalised to unit length. Sentence embeddings look like this: MiniLM's turns of
  the dev conversations have a spectrum close to i^-1 over their top 100 eigenvalues, an effective dimension of
  ~40 and a common direction that holds ~27% of a vector's squared norm (`--spectrum-of` compares a file of real
  embeddings with the synthetic ones). There are no clusters for IVF to find, so nprobe decides the recall.
- `clustered` (easy): 1,000 tight Gaussian blobs; IVF with nprobe 8 finds the exact top 10 every time.

Prints (and writes as JSON with --out):
- insert throughput: SQLite commits alone, and SQLite + FAISS index together;
- p50 / p99 latency of a top-10 `MemoryStore.search` through the index (relevance only, and with all four
  components, scored from the columns beside the index; SQLite rows are read for the 10 hits only), and of the bare
  FAISS search for the same candidates, the three timed side by side on every query after a warm-up (`--warmup`),
  with the store's overhead over FAISS (median of per-query differences) and the ratios, and each store search's
  own time (it minus the FAISS search inside it, timed in the same call: `store_own_*`);
- the time to open the store again: the index file (read, checksummed) and the scoring columns (from SQLite);
- recall@10 of the store's top-10 against exact cosine top-10;
- peak RSS;
- brute-force numpy top-10 (matrix-vector product + argpartition) in the same run, and the speed-up over it;
- the recall@10-vs-latency curve (`--sweep-nprobe` for IVF, `--sweep-ef` for hnsw / pca_hnsw; flat is one point):
  FAISS alone and the store, side by side at every point, with the store's overhead. `--index` takes several
  families (`pca_hnsw,hnsw,ivfflat,flat`): the first is built while inserting (its figures are the main ones), each
  later one is rebuilt from SQLite (its build time reported) after the previous index is freed, and swept on the
  same queries. `--plot` draws every family in one figure; `sweep_chosen` names each family's cheapest point (store
  p50, full score) with recall@10 >= 0.95.
Goals (docs/memory.md says which are met): p50 <= 2 ms (relevance-only and full), store overhead over FAISS <= 0.3 ms
(the store's own time, relevance-only and full), recall@10 >= 0.95, >= 100x faster than brute force.
The vectors live three times in this process at 1M x 1024 (numpy copy for the exact answers, FAISS, SQLite pages):
about 12 GiB. Use --n to stay inside the machine; the figures scale as noted in docs/memory.md.
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmemory.memory.columns import FIELDS
from mmemory.memory.index import INDEX_TYPES, IndexConfig
from mmemory.memory.store import MemoryStore

logger = logging.getLogger(__name__)


def clustered(rng: np.random.Generator, centers: np.ndarray, n: int, noise: float) -> np.ndarray:
    """n unit vectors around random cluster centres (a Gaussian blob per centre)."""
    idx = rng.integers(0, len(centers), n)
    x = centers[idx] + noise * rng.standard_normal((n, centers.shape[1]), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def anisotropic(rng: np.random.Generator, n: int, dim: int, alpha: float = 1.0, mean_share: float = 0.27,
                mean_dir: np.ndarray | None = None) -> np.ndarray:
    """n unit vectors: a shared offset along `mean_dir` (a unit vector) holding `mean_share` of the squared norm,
    plus a Gaussian whose covariance eigenvalues fall as i^-alpha along the axes (inner-product indexes and k-means
    are unchanged by a rotation, so the axes need not be rotated). Pass one `mean_dir` for data and queries."""
    lam = np.arange(1, dim + 1, dtype=np.float64) ** -alpha
    scale = np.sqrt(lam / lam.sum() * (1.0 - mean_share)).astype(np.float32)
    if mean_dir is None:
        mean_dir = np.full(dim, 1.0 / np.sqrt(dim), dtype=np.float32)
    x = rng.standard_normal((n, dim), dtype=np.float32) * scale
    x += np.float32(np.sqrt(mean_share)) * mean_dir.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def spectrum_summary(x: np.ndarray, top: int = 100) -> dict:
    """Shape of a set of unit vectors: the mean's squared norm, the power-law exponent of the centred covariance's
    top eigenvalues (least squares in log-log over ranks 1..top), the effective dimension (sum^2 / sum of squares of
    the eigenvalues) and the share of variance in the top 10 / 100 directions."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    mu = x.mean(0)
    ev = np.sort(np.linalg.eigvalsh(np.cov((x - mu).T)))[::-1].clip(min=0)
    top = min(top, int((ev > 1e-12).sum()))
    ranks = np.arange(1, top + 1)
    alpha = -float(np.polyfit(np.log(ranks), np.log(ev[:top]), 1)[0])
    return {"n": len(x), "dim": x.shape[1], "mean_norm2": float(mu @ mu), f"alpha_top{top}": alpha,
            "effective_dim": float(ev.sum() ** 2 / (ev ** 2).sum()), "top10_share": float(ev[:10].sum() / ev.sum()),
            "top100_share": float(ev[:100].sum() / ev.sum())}


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MiB."""
    cur = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
    return cur, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p))


def index_families(value: str) -> list[str]:
    """--index: one or more index types, comma-separated."""
    kinds = [v.strip() for v in value.split(",") if v.strip()]
    bad = [k for k in kinds if k not in INDEX_TYPES]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"unknown index type(s) {', '.join(bad) or value!r}; use "
                                         f"{', '.join(INDEX_TYPES)}")
    return kinds


KNOB = {"ivfflat": "nprobe", "ivfpq": "nprobe", "hnsw": "ef_search", "pca_hnsw": "ef_search", "flat": None}


def set_knob(index, name: str | None, value: int | None) -> None:
    """Set a built VectorIndex's search-time setting (nprobe or efSearch) for the following searches."""
    import dataclasses

    import faiss

    if name is None:
        return
    index.cfg = dataclasses.replace(index.cfg, **{name: value})
    if name == "nprobe":
        faiss.extract_index_ivf(index.index).nprobe = value


def describe(cfg: IndexConfig, kind: str) -> str:
    """The built index's settings, for the table."""
    return {"hnsw": f"M={cfg.hnsw_m} efC={cfg.ef_construction} efSearch={cfg.ef_search}",
            "pca_hnsw": f"pca_dim={cfg.pca_dim} M={cfg.hnsw_m} efC={cfg.ef_construction} efSearch={cfg.ef_search} "
                        f"refine_factor={cfg.refine_factor} pca_train={cfg.pca_train}",
            "ivfpq": f"nlist={cfg.ivf_nlist} m={cfg.pq_m} nprobe={cfg.nprobe}",
            "ivfflat": f"nlist={cfg.ivf_nlist} nprobe={cfg.nprobe} train={cfg.ivf_nlist * cfg.min_train} "
                       f"niter={cfg.kmeans_niter} quantizer={cfg.ivf_quantizer}"}.get(kind, "exact")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmemory.bench memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="memories to insert")
    ap.add_argument("--dim", type=int, default=1024, help="embedding dimension (ImageBind-Huge: 1024)")
    ap.add_argument("--distribution", default="anisotropic", choices=["anisotropic", "clustered"],
                    help="anisotropic: power-law spectrum around a common direction, like sentence embeddings (hard); "
                         "clustered: tight Gaussian blobs (easy)")
    ap.add_argument("--alpha", type=float, default=1.0, help="anisotropic: eigenvalue i ~ i^-alpha (MiniLM dev: ~1.0)")
    ap.add_argument("--mean-share", type=float, default=0.27,
                    help="anisotropic: share of the squared norm on the common direction (MiniLM dev: 0.27)")
    ap.add_argument("--spectrum-of", default=None, metavar="NPZ",
                    help="an .npz with real embeddings under 'vectors' (e.g. `memory evaluate --embedding-cache`): "
                         "its spectrum is reported beside the synthetic vectors'")
    ap.add_argument("--sweep-nprobe", default=None, metavar="NPROBES",
                    help="IVF families: comma-separated nprobe values timed after the main series (recall@10 vs p50)")
    ap.add_argument("--sweep-ef", default=None, metavar="EFS",
                    help="hnsw / pca_hnsw families: comma-separated efSearch values (recall@10 vs p50)")
    ap.add_argument("--sweep-queries", type=int, default=100, help="queries per sweep point")
    ap.add_argument("--plot", default=None, metavar="PNG", help="draw the sweep: recall@10 against p50")
    ap.add_argument("--clusters", type=int, default=1000, help="clustered: cluster centres of the synthetic vectors")
    ap.add_argument("--noise", type=float, default=0.02,
                    help="per-coordinate noise around a unit centre (0.02 at 1024-d: same-cluster cosine ~0.7)")
    ap.add_argument("--queries", type=int, default=200, help="timed store searches")
    ap.add_argument("--warmup", type=int, default=50, help="untimed searches of every series before timing")
    ap.add_argument("--brute-queries", type=int, default=20, help="timed brute-force searches (slow at 1M)")
    ap.add_argument("--index", default="pca_hnsw", type=index_families, metavar="TYPES",
                    help=f"index type, or several comma-separated (the first is the main one): {', '.join(INDEX_TYPES)}")
    ap.add_argument("--nlist", type=int, default=4096, help="IVF coarse clusters (~4 * sqrt(n))")
    ap.add_argument("--pq-m", type=int, default=IndexConfig.pq_m, help="IVF-PQ sub-quantisers (bytes per vector)")
    ap.add_argument("--nprobe", type=int, default=8, help="IVF lists visited per search")
    ap.add_argument("--train-per-list", type=int, default=20, help="IVF training vectors per list")
    ap.add_argument("--kmeans-niter", type=int, default=10, help="IVF k-means iterations")
    ap.add_argument("--quantizer", default=IndexConfig.ivf_quantizer, choices=["flat", "hnsw"],
                    help="IVF coarse quantiser")
    ap.add_argument("--hnsw-m", type=int, default=IndexConfig.hnsw_m)
    ap.add_argument("--ef-construction", type=int, default=IndexConfig.ef_construction)
    ap.add_argument("--ef-search", type=int, default=IndexConfig.ef_search)
    ap.add_argument("--pca-dim", type=int, default=IndexConfig.pca_dim, help="pca_hnsw: dimensions the graph sees")
    ap.add_argument("--refine-factor", type=int, default=IndexConfig.refine_factor,
                    help="pca_hnsw: graph candidates per asked-for one, re-ranked exactly")
    ap.add_argument("--pca-train", type=int, default=IndexConfig.pca_train,
                    help="pca_hnsw: vectors the projection is learned on (flat until the store holds that many)")
    ap.add_argument("--candidates", type=int, default=40, help="index candidates rescored exactly per search")
    ap.add_argument("--batch", type=int, default=10_000, help="memories per add_many transaction")
    ap.add_argument("--store", default="/tmp/mmemory-bench-memory", help="scratch store directory (replaced)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch store")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    rng = np.random.default_rng(args.seed)
    centers = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    mean_dir = centers[0]   # anisotropic: the common direction (one for data and queries)

    def draw(n: int) -> np.ndarray:
        if args.distribution == "clustered":
            return clustered(rng, centers, n, args.noise)
        return anisotropic(rng, n, args.dim, args.alpha, args.mean_share, mean_dir)
    shutil.rmtree(args.store, ignore_errors=True)
    def config(kind: str) -> IndexConfig:
        return IndexConfig(type=kind, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                           ef_search=args.ef_search, ivf_nlist=args.nlist, pq_m=args.pq_m, nprobe=args.nprobe,
                           min_train=args.train_per_list, kmeans_niter=args.kmeans_niter, ivf_quantizer=args.quantizer,
                           pca_dim=args.pca_dim, refine_factor=args.refine_factor,
                           pca_train=min(args.pca_train, args.n))
    families = args.index
    cfg = config(families[0])
    def open_store() -> MemoryStore:
        return MemoryStore(args.store, dim=args.dim, index=cfg, n_candidates=args.candidates, exhaustive_below=0,
                           update_access=False, save_every=1 << 62, synchronous="NORMAL")
    store = open_store()
    store._sync()  # an empty index from the start: every batch is indexed as it is committed

    # --- insert ------------------------------------------------------------------------------------------------
    X = np.empty((args.n, args.dim), dtype=np.float32)
    t_db = t_index = 0.0
    t_start = 1.7e9
    for start in tqdm(range(0, args.n, args.batch), desc="insert", unit="batch"):
        x = draw(min(args.batch, args.n - start))
        X[start:start + len(x)] = x
        items = [{"text": f"memory {start + i}", "session": f"s{(start + i) // 1000}", "vector": v,
                  "saliency": 1.0 + (start + i) % 10, "timestamp": t_start + start + i} for i, v in enumerate(x)]
        index, store._index = store._index, None  # time the database commit alone ...
        t0 = time.perf_counter()
        store.add_many(items, batch_size=args.batch)
        t1 = time.perf_counter()
        store._index = index                       # ... then the index catching up with it
        store._sync()
        t_db += t1 - t0
        t_index += time.perf_counter() - t1
    t0 = time.perf_counter()
    store._save_index()
    t_save = time.perf_counter() - t0
    ids_offset = store.db.execute("SELECT MIN(id) FROM memories").fetchone()[0]

    # --- brute force (exact answers), then free the numpy copy so the store searches with the memory it needs ------
    spectrum = {"synthetic": spectrum_summary(X[:min(len(X), 20_000)])}
    if args.spectrum_of:
        with np.load(args.spectrum_of, allow_pickle=False) as z:
            spectrum["real (" + Path(args.spectrum_of).name + ")"] = spectrum_summary(z["vectors"])
    queries = draw(args.queries)
    lat_brute, exact = [], []
    for qi in tqdm(range(args.queries), desc="exact top-10", unit="query"):
        q = queries[qi]
        t0 = time.perf_counter()
        sims = X @ q
        top = np.argpartition(-sims, 10)[:10]
        top = top[np.argsort(-sims[top])]
        dt = time.perf_counter() - t0
        if qi < args.brute_queries:
            lat_brute.append(dt)
        exact.append(set(top.tolist()))
    _, peak_with_copy = rss_mb()
    del X, sims

    # --- reopen: what a process pays before its first search (index file, scoring columns) ------------------------
    store._index = index = None   # freed before the saved one is read
    store.close()
    t0 = time.perf_counter()
    store = open_store()
    store._sync()
    t1 = time.perf_counter()
    with store._snapshot():
        columns = store._columns_sync()
    open_s = {"index": t1 - t0, "columns": time.perf_counter() - t1}
    columns_mb = sum(getattr(columns, name).nbytes for name in FIELDS) / 2**20

    # --- store search ------------------------------------------------------------------------------------------
    now = t_start + args.n
    full = {"relevance": 1, "recency": 1, "frequency": 1, "saliency": 1}
    series = {  # the three series, each timed on every query, side by side (their order rotates per query)
        "faiss": lambda q: store._index.search(q, args.candidates),   # what the store asks FAISS for
        "relevance": lambda q: store.search(query_vector=q, k=10, weights={"relevance": 1}, now=now),
        "full": lambda q: store.search(query_vector=q, k=10, weights=full, now=now),
    }
    names = list(series)
    inner = [0.0]   # seconds of the latest FAISS search (the one inside a store search included)

    def watch(index) -> None:
        """Time this index's searches into `inner`, to tell a store search's own work from its FAISS search."""
        if "search" not in vars(index):
            search = index.search

            def timed_search(*a, **kw):
                t0 = time.perf_counter()
                try:
                    return search(*a, **kw)
                finally:
                    inner[0] = time.perf_counter() - t0
            index.search = timed_search

    def timed(qs) -> tuple[dict[str, list[float]], list[float]]:
        """Each series' latency on every query (their order rotating per query), each store search's own time (it
        minus the FAISS search inside it: `<series>_own`) and relevance's recall@10."""
        watch(store._index)
        lat, rec = {name: [] for name in (*series, "relevance_own", "full_own")}, []
        for qi, q in enumerate(qs):
            for name in names[qi % 3:] + names[:qi % 3]:
                t0 = time.perf_counter()
                out = series[name](q)
                lat[name].append(time.perf_counter() - t0)
                if name != "faiss":
                    lat[name + "_own"].append(lat[name][-1] - inner[0])
                if name == "relevance":
                    rec.append(len(exact[qi] & {h.memory.id - ids_offset for h in out}) / 10)
                del out   # freed here, outside every timed call (not by the next series' assignment, inside it)
        return lat, rec

    warm_q = draw(args.warmup)   # not the timed queries: caches, pages, allocator
    for q in tqdm(warm_q, desc="warm-up", unit="query"):
        for fn in series.values():
            fn(q)
    lat, recalls = timed(tqdm(queries, desc="search", unit="query"))
    lat_faiss, lat_rel, lat_full = lat["faiss"], lat["relevance"], lat["full"]
    index_bytes = (Path(args.store) / "index.faiss").stat().st_size
    main_params = describe(store._index.cfg, store._index.kind)

    def point(kind: str, knob: str | None, value: int | None, build_s: float) -> dict:
        """One sweep point: warm-up, then the three series side by side on the first --sweep-queries queries."""
        set_knob(store._index, knob, value)
        for q in warm_q[:10]:
            for fn in series.values():
                fn(q)
        lat_p, rec_p = timed(queries[:args.sweep_queries])
        out = {"index": kind, "knob": knob, "value": value, "params": describe(store._index.cfg, store._index.kind),
               "build_s": build_s, "recall@10": float(np.mean(rec_p)),
               **{f"{name}_p50_ms": 1e3 * pct(v, 50) for name, v in lat_p.items()},
               "store_overhead_p50_ms": 1e3 * float(np.median(np.subtract(lat_p["relevance"], lat_p["faiss"]))),
               "store_overhead_full_p50_ms": 1e3 * float(np.median(np.subtract(lat_p["full"], lat_p["faiss"]))),
               "speedup_vs_brute_force_p50": pct(lat_brute, 50) / pct(lat_p["relevance"], 50),
               "speedup_full_vs_brute_force_p50": pct(lat_brute, 50) / pct(lat_p["full"], 50)}
        logger.info("sweep %s", {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()})
        return out

    sweep, builds = [], {families[0]: t_index}
    values = {"nprobe": args.sweep_nprobe, "ef_search": args.sweep_ef}
    for i, kind in enumerate(families):
        if i:  # the next family: free the previous index, rebuild from SQLite (the store's own path), time it
            store._index = None
            store.index_cfg = config(kind)
            t0 = time.perf_counter()
            store.rebuild_index()
            builds[kind] = time.perf_counter() - t0
        knob = KNOB[store._index.kind]
        base = getattr(store._index.cfg, knob) if knob else None
        todo = [int(v) for v in values[knob].split(",")] if knob and values[knob] else [base]
        for value in tqdm(todo, desc=f"sweep {kind}", unit="point"):
            sweep.append(point(store._index.kind, knob, value, builds[kind]))
        set_knob(store._index, knob, base)
    cur, peak = rss_mb()
    db_bytes = sum(f.stat().st_size for f in Path(args.store).glob("memory.sqlite*"))
    store.close()
    if not args.keep:
        shutil.rmtree(args.store, ignore_errors=True)

    res = {
        "n": args.n, "dim": args.dim, "index": sweep[0]["index"] if sweep else store._index.kind,
        "index_params": main_params,
        "distribution": args.distribution, **({"noise": args.noise, "clusters": args.clusters}
                                              if args.distribution == "clustered" else
                                              {"alpha": args.alpha, "mean_share": args.mean_share}),
        "candidates_rescored": args.candidates, "threads": os.cpu_count(),
        "insert_per_s_db": args.n / t_db, "insert_per_s_db_and_index": args.n / (t_db + t_index),
        "insert_s_db": t_db, "insert_s_index": t_index, "index_save_s": t_save,
        "open_s_index": open_s["index"], "open_s_columns": open_s["columns"], "columns_mb": columns_mb,
        "search_p50_ms": 1e3 * pct(lat_rel, 50), "search_p99_ms": 1e3 * pct(lat_rel, 99),
        "search_full_score_p50_ms": 1e3 * pct(lat_full, 50), "search_full_score_p99_ms": 1e3 * pct(lat_full, 99),
        "faiss_only_p50_ms": 1e3 * pct(lat_faiss, 50), "faiss_only_p99_ms": 1e3 * pct(lat_faiss, 99),
        "store_overhead_p50_ms": 1e3 * float(np.median(np.subtract(lat_rel, lat_faiss))),
        "store_overhead_full_score_p50_ms": 1e3 * float(np.median(np.subtract(lat_full, lat_faiss))),
        "store_own_p50_ms": 1e3 * pct(lat["relevance_own"], 50),
        "store_own_full_score_p50_ms": 1e3 * pct(lat["full_own"], 50),
        "ratio_search_to_faiss_p50": pct(lat_rel, 50) / pct(lat_faiss, 50),
        "ratio_full_score_to_faiss_p50": pct(lat_full, 50) / pct(lat_faiss, 50),
        "ratio_full_score_to_search_p50": pct(lat_full, 50) / pct(lat_rel, 50),
        "warmup_queries": args.warmup,
        "load_average_1min": os.getloadavg()[0],
        "brute_force_p50_ms": 1e3 * pct(lat_brute, 50), "brute_force_p99_ms": 1e3 * pct(lat_brute, 99),
        "speedup_vs_brute_force_p50": pct(lat_brute, 50) / pct(lat_rel, 50),
        "recall@10": float(np.mean(recalls)), "rss_mb_after_freeing_numpy_copy": cur,
        "peak_rss_mb_with_numpy_copy": peak_with_copy, "peak_rss_mb": peak,
        "db_mb": db_bytes / 2**20, "index_mb": index_bytes / 2**20,
    }
    goals = {"p50<=2ms": res["search_p50_ms"] <= 2.0, "full score p50<=2ms": res["search_full_score_p50_ms"] <= 2.0,
             # the store's own time (same call), not the per-query differences, which the call order biases
             "store overhead<=0.3ms": max(res["store_own_p50_ms"], res["store_own_full_score_p50_ms"]) <= 0.3,
             "recall@10>=0.95": res["recall@10"] >= 0.95,
             ">=100x brute force": res["speedup_vs_brute_force_p50"] >= 100}
    res["goals_met"] = goals
    res["spectrum"] = spectrum
    res["builds_s"] = builds
    res["sweep"] = sweep
    res["sweep_chosen"] = {}   # per family: the cheapest point (store p50, full score) with recall@10 >= 0.95
    for kind in dict.fromkeys(p["index"] for p in sweep):
        good = [p for p in sweep if p["index"] == kind and p["recall@10"] >= 0.95]
        best = min(good, key=lambda p: p["full_p50_ms"]) if good else None
        res["sweep_chosen"][kind] = None if best is None else best["value"] if best["knob"] else "exact"
    if args.plot:
        plot_sweep(sweep, pct(lat_brute, 50) * 1e3, args.plot,
                   f"{args.n:,} x {args.dim}, {args.distribution}, {args.candidates} candidates; "
                   f"load avg {res['load_average_1min']:.1f}")
    width = max(map(len, res))
    for k, v in res.items():
        if k != "sweep":
            print(f"{k:<{width}}  {v:,.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    cols = ("recall@10", "faiss_p50_ms", "relevance_p50_ms", "full_p50_ms", "store_overhead_p50_ms", "full_own_p50_ms",
            "speedup_full_vs_brute_force_p50")
    print("sweep: index  setting  " + "  ".join(cols))
    for p in sweep:
        print(f"  {p['index']}  {p['knob'] or 'exact'}={p['value']}  " + "  ".join(f"{p[c]:.3f}" for c in cols))
    if args.out:
        from mmemory.io import atomic_write_json

        atomic_write_json(args.out, res, indent=1)
    return 0


def plot_sweep(sweep: list[dict], brute_ms: float, out_png: str | Path, title: str) -> None:
    """Recall@10 against p50 latency, one colour per index family: the store with full scoring (solid) and FAISS
    alone (dashed) at each swept setting, and exact brute force."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    short = {"nprobe": "nprobe ", "ef_search": "ef ", None: ""}
    for i, kind in enumerate(dict.fromkeys(p["index"] for p in sweep)):
        pts = [p for p in sweep if p["index"] == kind]
        colour = f"C{i}"
        rec = [p["recall@10"] for p in pts]
        ax.plot([p["full_p50_ms"] for p in pts], rec, marker="o", color=colour, label=f"{kind}: store, full score")
        ax.plot([p["faiss_p50_ms"] for p in pts], rec, marker=".", ls="--", color=colour, alpha=0.6,
                label=f"{kind}: FAISS alone")
        for p in pts:
            if p["knob"]:
                ax.annotate(f"{short[p['knob']]}{p['value']}", (p["full_p50_ms"], p["recall@10"]), fontsize=6,
                            color=colour, xytext=(3, -8), textcoords="offset points")
    ax.scatter([brute_ms], [1.0], marker="s", color="k", label="brute force (numpy, exact)", zorder=3)
    ax.axhline(0.95, color="grey", ls=":", lw=1)
    ax.axvline(2.0, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per query (ms, log)")
    ax.set_ylabel("recall@10 vs exact top 10")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    from mmemory.figures import save_figure

    save_figure(fig, out_png)
