"""Score retrieval methods on memory sessions (README "Data contracts", memory sessions: turns + queries JSONL).

    python -m mmemory.memory evaluate --turns T.jsonl --queries Q.jsonl --out M.json [--encoder minilm]

The sessions are replayed in time order through a real `MemoryStore` per method: each turn is added when it happens
(its caption is remembered with it), and each query is answered from the memories of its own session that are
strictly older than the query. After a query, its top `retrieve_k` memories count as accessed (that is what the
frequency component learns from). Each query scores recall@k = |evidence in top-k| / |evidence| and the reciprocal
rank of its first evidence turn; the means over queries are reported per method, overall and per query type.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mmemory.encoders import CachedEncoder
from mmemory.io import read_jsonl
from mmemory.memory.scoring import COMPONENTS, check_weights, minmax
from mmemory.memory.store import MemoryInputError, MemoryStore, to_unix

logger = logging.getLogger(__name__)

# Generative Agents weighs its components equally; the ablation adds one component at a time to relevance.
DEFAULT_METHODS: dict[str, dict[str, float]] = {
    "relevance": {"relevance": 1.0},
    "+recency": {"relevance": 1.0, "recency": 1.0},
    "+frequency": {"relevance": 1.0, "frequency": 1.0},
    "+saliency": {"relevance": 1.0, "saliency": 1.0},
    "full": {"relevance": 1.0, "recency": 1.0, "frequency": 1.0, "saliency": 1.0},
    "bm25": {"lexical": 1.0},
    "hybrid": {"relevance": 1.0, "lexical": 1.0},
}
KS = (1, 5, 10, 20)


def load_sessions(turns_path: str | Path, queries_path: str | Path) -> tuple[list[dict], list[dict]]:
    """Read and check the two JSONL files; a bad row names the file, the row and what is missing."""
    turns, queries = read_jsonl(turns_path), read_jsonl(queries_path)
    seen: dict[str, dict] = {}
    for n, t in enumerate(turns, 1):
        missing = [k for k in ("session_id", "turn_id", "timestamp", "speaker", "text") if k not in t]
        if missing:
            raise MemoryInputError(f"{turns_path}: turn {n} lacks {missing}; see the README, 'Data contracts'")
        if t["turn_id"] in seen:
            raise MemoryInputError(f"{turns_path}: turn {n} repeats turn_id {t['turn_id']!r}; turn ids must be unique")
        if not str(t["text"]).strip() and not t.get("image") and not t.get("caption"):
            raise MemoryInputError(f"{turns_path}: turn {n} ({t['turn_id']}) has empty text and no image or caption")
        if t.get("image") and not Path(t["image"]).is_file():
            raise FileNotFoundError(f"{turns_path}: turn {n} ({t['turn_id']}): image {t['image']} does not exist; "
                                    "fix the path (relative paths are read from the working directory)")
        t["_ts"] = to_unix(t["timestamp"])
        seen[t["turn_id"]] = t
    for n, q in enumerate(queries, 1):
        missing = [k for k in ("query_id", "session_id", "timestamp", "question", "evidence") if k not in q]
        if missing:
            raise MemoryInputError(f"{queries_path}: query {n} lacks {missing}; see the README, 'Data contracts'")
        if not q["evidence"]:
            raise MemoryInputError(f"{queries_path}: query {n} ({q['query_id']}) has no evidence turn ids")
        q["_ts"] = to_unix(q["timestamp"])
        for e in q["evidence"]:
            t = seen.get(e)
            if t is None:
                raise MemoryInputError(f"{queries_path}: query {n} ({q['query_id']}) cites turn {e!r}, "
                                       f"which is not in {turns_path}")
            if t["session_id"] != q["session_id"] or t["_ts"] >= q["_ts"]:
                raise MemoryInputError(f"{queries_path}: query {n} ({q['query_id']}) cites turn {e!r}, which is not "
                                       "an earlier turn of its own session: it could never be retrieved")
    return turns, queries


def replay(turns: list[dict], queries: list[dict], encoder: Any, weights: dict[str, float], workdir: str | Path,
           retrieve_k: int = 5, store_kwargs: dict | None = None, desc: str = "", collect: bool = False) -> list[dict]:
    """Run one method over the sessions; returns per query {query_id, type, ranks of evidence (1-based or None)}."""
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    store = MemoryStore(workdir, encoder=encoder, weights=check_weights(weights), update_access=False,
                        **(store_kwargs or {}))
    events = sorted([(t["_ts"], 0, i) for i, t in enumerate(turns)] + [(q["_ts"], 1, i) for i, q in enumerate(queries)])
    pending: list[dict] = []
    turn_of_memory: dict[int, str] = {}
    out = []
    for ts, kind, i in tqdm(events, desc=desc or "replay", unit="event", leave=False):
        if kind == 0:
            t = turns[i]
            pending.append(dict(text=t["text"], session=t["session_id"], timestamp=t["_ts"], speaker=t["speaker"],
                                image=t.get("image"), caption=t.get("caption"), source=t["turn_id"]))
            continue
        if pending:
            for mid, item in zip(store.add_many(pending), pending):
                turn_of_memory[mid] = item["source"]
            pending = []
        q = queries[i]
        hits = store.search(query_text=q["question"], now=q["_ts"], before=q["_ts"], session=q["session_id"],
                            k=1_000_000, update_access=False)
        ranked = [turn_of_memory[h.memory.id] for h in hits]
        pos = {tid: r for r, tid in enumerate(ranked, 1)}
        out.append({"query_id": q["query_id"], "type": q.get("type", "all"), "candidates": len(ranked),
                    "ranks": [pos.get(e) for e in q["evidence"]], "top": ranked[:5]})
        if collect:  # raw components of every candidate, for weight tuning without replaying
            ev = set(q["evidence"])
            out[-1]["raw"] = {c: np.array([h.raw[c] for h in hits]) for c in COMPONENTS if hits and c in hits[0].raw}
            out[-1]["is_evidence"] = np.array([tid in ev for tid in ranked])
        if retrieve_k:
            store.mark_accessed([h.memory.id for h in hits[:retrieve_k]], q["_ts"])
    store.close()
    shutil.rmtree(workdir, ignore_errors=True)
    return out


TUNE_GRID = {"recency": (0, 0.1, 0.25, 0.5, 1), "frequency": (0, 0.1, 0.25, 0.5),
             "saliency": (0, 0.1, 0.25, 0.5, 1), "lexical": (0, 0.25, 0.5, 1)}


def tune_weights(turns: list[dict], queries: list[dict], encoder: Any, workdir: str | Path, retrieve_k: int = 5,
                 store_kwargs: dict | None = None, grid: dict[str, tuple] | None = None, metric: str = "recall@5"
                 ) -> tuple[dict[str, float], dict]:
    """Weights (relevance fixed at 1) that maximise `metric` on these (training) sessions, by grid search.

    The sessions are replayed once with hybrid weights (relevance + lexical) to record every candidate's raw
    components; each weight setting then re-ranks the recorded candidates. The frequency component is therefore
    the one that this single replay's retrievals produced, an approximation of the access counts the tuned
    weights would produce themselves.
    """
    grid = grid or TUNE_GRID
    cached = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)
    recorded = replay(turns, queries, cached, {"relevance": 1.0, "lexical": 1.0}, workdir, retrieve_k,
                      {**(store_kwargs or {})}, desc="tune", collect=True)
    k = int(metric.split("@")[1]) if "@" in metric else None
    names = list(grid)
    norm = [{c: minmax(q["raw"][c]) for c in ("relevance", *names)} for q in recorded if q.get("raw")]
    flags = [q["is_evidence"] for q in recorded if q.get("raw")]
    best, best_score, tried = None, -1.0, 0
    import itertools

    for values in itertools.product(*(grid[n] for n in names)):
        w = dict(zip(names, values))
        total = 0.0
        for comp, ev in zip(norm, flags):
            score = comp["relevance"] + sum(w[n] * comp[n] for n in names if w[n])
            order = np.argsort(-score, kind="stable")
            hit = ev[order]
            if k is not None:
                total += hit[:k].sum() / max(ev.sum(), 1)
            else:
                first = np.flatnonzero(hit)
                total += 1.0 / (first[0] + 1) if len(first) else 0.0
        tried += 1
        if total > best_score + 1e-12:
            best, best_score = w, total
    weights = {"relevance": 1.0, **{n: float(v) for n, v in best.items() if v}}
    info = {"tuned_on_queries": len(flags), "tuned_metric": metric, "tuned_score": best_score / max(len(flags), 1),
            "settings_tried": tried}
    logger.info("tuned weights %s (%s %.3f on %d training queries, %d settings)", weights, metric,
                info["tuned_score"], len(flags), tried)
    return weights, info


def summarise(per_query: list[dict], ks=KS) -> dict:
    """Mean recall@k (|evidence in top-k| / |evidence|), MRR (first evidence) and the query count."""
    if not per_query:
        return {**{f"recall@{k}": 0.0 for k in ks}, "mrr": 0.0, "queries": 0}
    rec = {k: np.mean([sum(r is not None and r <= k for r in q["ranks"]) / len(q["ranks"]) for q in per_query])
           for k in ks}
    rr = [1.0 / min(r for r in q["ranks"] if r is not None) if any(r is not None for r in q["ranks"]) else 0.0
          for q in per_query]
    return {**{f"recall@{k}": float(rec[k]) for k in ks}, "mrr": float(np.mean(rr)), "queries": len(per_query)}


def evaluate(turns: list[dict], queries: list[dict], encoder: Any, methods: dict[str, dict[str, float]] | None = None,
             workdir: str | Path = "/tmp/mmemory-memory-eval", retrieve_k: int = 5, store_kwargs: dict | None = None,
             ks=KS) -> dict:
    """All methods side by side: {"methods": {name: summary}, "by_type": {name: {type: summary}}, "per_query"}."""
    methods = methods or DEFAULT_METHODS
    cached = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)
    cached.warm([t["text"] for t in turns] + [t["caption"] for t in turns if t.get("caption")]
                + [q["question"] for q in queries], [t["image"] for t in turns if t.get("image")])
    result = {"methods": {}, "by_type": {}, "per_query": {}}
    for name, weights in methods.items():
        t0 = time.perf_counter()
        per_query = replay(turns, queries, cached, weights, Path(workdir) / _safe(name), retrieve_k, store_kwargs,
                           desc=name)
        dt = time.perf_counter() - t0
        result["methods"][name] = summarise(per_query, ks)
        types = sorted({q["type"] for q in per_query})
        result["by_type"][name] = {t: summarise([q for q in per_query if q["type"] == t], ks) for t in types}
        result["per_query"][name] = per_query
        logger.info("%-12s %s (%.1fs, %.0f queries/s)", name,
                    {k: round(v, 3) for k, v in result["methods"][name].items()}, dt, len(queries) / max(dt, 1e-9))
    result["images_embedded"] = cached.images_supported
    return result


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def metrics_json(result: dict, methods: dict[str, dict[str, float]], info: dict, chosen: str | None = None,
                 val: dict[str, dict] | None = None, data: str = "memory sessions") -> dict:
    """The report's metrics.json: the ablation table, a per-type recall@5 table and headline numbers.
    `chosen`: the method picked on val beforehand (`val`: its summaries), marked in the table and the headline;
    `data` names the sessions the table was computed on."""
    table = []
    for name, s in result["methods"].items():
        row = {"method": name + (" (chosen on val)" if name == chosen else ""),
               "weights": " ".join(f"{c}={w:g}" for c, w in methods[name].items()),
               **{k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()}}
        if val is not None:
            row["val recall@5"] = round(val[name]["recall@5"], 4)
        table.append(row)
    types = sorted({t for by in result["by_type"].values() for t in by})
    by_type = [{"method": name, **{f"{t} r@5": round(by[t]["recall@5"], 4) for t in types if t in by},
                **{f"{t} n": by[t]["queries"] for t in types if t in by}}
               for name, by in result["by_type"].items()]
    head = {f"memory {m} r@5": result["methods"][m]["recall@5"] for m in ("relevance", "full")
            if m in result["methods"]}
    if chosen:
        head[f"memory chosen-on-val ({chosen}) r@5"] = result["methods"][chosen]["recall@5"]
    return {"tables": {f"Retrieval ablation on {data} (mean over queries)": table,
                       f"Recall@5 by query type ({data})": by_type},
            "headline": head, **({"chosen_method": chosen} if chosen else {}), **info}


def plot_recall(result: dict, out_png: str | Path, ks=KS) -> None:
    """Recall@k curves, one line per method, plus MRR bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    for name, s in result["methods"].items():
        a.plot(ks, [s[f"recall@{k}"] for k in ks], marker="o", label=name)
    a.set_xscale("log")
    a.set_xticks(ks, [str(k) for k in ks])
    a.set_xlabel("k")
    a.set_ylabel("mean recall@k")
    a.set_ylim(0, 1.02)
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    names = list(result["methods"])
    b.barh(names, [result["methods"][n]["mrr"] for n in names])
    b.invert_yaxis()
    b.set_xlabel("MRR")
    b.set_xlim(0, 1)
    fig.suptitle(f"retrieval memory: {next(iter(result['methods'].values()))['queries']} queries")
    fig.tight_layout()
    from mmemory.figures import save_figure

    save_figure(fig, out_png)
