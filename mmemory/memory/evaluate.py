"""Score retrieval methods on memory sessions (README "Data contracts", memory sessions: turns + queries JSONL).

    python -m mmemory.memory evaluate --turns T.jsonl --queries Q.jsonl --out M.json [--encoder minilm]

The sessions are replayed in time order through a real `MemoryStore` per method: each turn is added when it happens
(its caption is remembered with it), and each query is answered from the memories of its own session that are
strictly older than the query. After a query, its top `retrieve_k` memories by the score WITHOUT frequency count as
accessed (what the frequency component learns from: it never feeds on its own retrievals). A turn id need only be
unique within its session: turns are keyed by (session_id, turn_id), and a query's evidence names turns of its own
session.

`--tune loo` adds a method `tuned (loo)`: for each session, weights are chosen by coordinate ascent on the OTHER
sessions' queries and then score that session's queries, so no query is scored by weights it helped choose. Each query scores recall@k = |evidence in top-k| / |evidence| and the reciprocal
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
from mmemory.memory.scoring import (COMPONENTS, CONTEXT, DEFAULT_WEIGHTS, MemoryConfig, TuneConfig, check_weights,
                                    combine, group_max, rank_in_group)
from mmemory.memory.store import MemoryInputError, MemoryStore, memory_key, to_unix

logger = logging.getLogger(__name__)


RETRIEVE_K = MemoryConfig.retrieve_k  # config memory.retrieve_k: memories counted as accessed after a query
TUNE_METRIC = TuneConfig.metric  # config memory.tune.metric: what the tuning maximises
KS = (1, 5, 10, 20)


def load_sessions(turns_path: str | Path, queries_path: str | Path,
                  torn_tail: bool = False) -> tuple[list[dict], list[dict]]:
    """Read and check the two JSONL files; a bad row names the file, the row and what is missing. A malformed last
    line is an error like any other (33 of 34 queries scored is a wrong score), unless `torn_tail` says the file may
    have been cut short by a kill: then it is skipped with a warning."""
    turns, queries = read_jsonl(turns_path, torn_tail=torn_tail), read_jsonl(queries_path, torn_tail=torn_tail)
    seen: dict[tuple[str, str], dict] = {}
    for n, t in enumerate(turns, 1):
        missing = [k for k in ("session_id", "turn_id", "timestamp", "speaker", "text") if k not in t]
        if missing:
            raise MemoryInputError(f"{turns_path}: turn {n} lacks {missing}; see the README, 'Data contracts'")
        key = (str(t["session_id"]), str(t["turn_id"]))
        if key in seen:
            raise MemoryInputError(f"{turns_path}: turn {n} repeats turn_id {t['turn_id']!r} of session "
                                   f"{t['session_id']!r}; turn ids must be unique within their session")
        if not str(t["text"]).strip() and not t.get("image") and not t.get("caption"):
            raise MemoryInputError(f"{turns_path}: turn {n} ({t['turn_id']}) has empty text and no image or caption")
        if t.get("image") and not Path(t["image"]).is_file():
            raise FileNotFoundError(f"{turns_path}: turn {n} ({t['turn_id']}): image {t['image']} does not exist; "
                                    "fix the path (relative paths are read from the working directory)")
        t["_ts"] = to_unix(t["timestamp"])
        seen[key] = t
    for n, q in enumerate(queries, 1):
        missing = [k for k in ("query_id", "session_id", "timestamp", "question", "evidence") if k not in q]
        if missing:
            raise MemoryInputError(f"{queries_path}: query {n} lacks {missing}; see the README, 'Data contracts'")
        if not q["evidence"]:
            raise MemoryInputError(f"{queries_path}: query {n} ({q['query_id']}) has no evidence turn ids")
        q["_ts"] = to_unix(q["timestamp"])
        for e in q["evidence"]:
            t = seen.get((str(q["session_id"]), str(e)))
            if t is None:
                raise MemoryInputError(f"{queries_path}: query {n} ({q['query_id']}) cites turn {e!r}, which is not "
                                       f"a turn of its session {q['session_id']!r} in {turns_path}")
            if t["_ts"] >= q["_ts"]:
                raise MemoryInputError(f"{queries_path}: query {n} ({q['query_id']}) cites turn {e!r}, which is not "
                                       "an earlier turn of its own session: it could never be retrieved")
    return turns, queries


def credits(q: dict) -> tuple[np.ndarray, np.ndarray]:
    """(candidate position, evidence unit) pairs of a recorded query: which candidate retrieves which distinct
    evidence turn. A turn retrieves itself; an observation (extra memory) retrieves every turn it cites."""
    if "credits" in q:
        return q["credits"]
    cand = np.flatnonzero(q["is_evidence"])
    return cand, np.arange(len(cand))


def evidence_ranks(q: dict, order: np.ndarray) -> list[int]:
    """Ascending 1-based ranks of the evidence turns retrieved when the candidates are ranked by `order`: each
    evidence turn at the first rank of a candidate that retrieves it."""
    cand, unit = credits(q)
    if not len(cand):
        return []
    rank_of = np.empty(len(order), dtype=np.int64)
    rank_of[order] = np.arange(len(order))
    best: dict[int, int] = {}
    for u, r in zip(unit.tolist(), rank_of[cand].tolist()):
        best[u] = min(best.get(u, r), r)
    return sorted(r + 1 for r in best.values())


def observation_items(turns: list[dict], extractor: Any) -> list[dict]:
    """Observations of every window of turns (see `mmemory.memory.observations`) as memory items: each dated at
    its window's last turn and carrying the turn ids it cites (`sources`)."""
    from mmemory.memory.observations import windows

    items = []
    for window in tqdm(windows(turns, extractor.cfg.window), desc="observations", unit="window", leave=False):
        for o in extractor(window):
            items.append({"session_id": window[-1]["session_id"], "_ts": window[-1]["_ts"], "speaker": o.speaker,
                          "text": o.text, "sources": o.sources})
    logger.info("observations: %s", extractor.counts)
    return items


def replay(turns: list[dict], queries: list[dict], encoder: Any, weights: dict[str, float], workdir: str | Path,
           retrieve_k: int = RETRIEVE_K, store_kwargs: dict | None = None, desc: str = "", collect: bool = False,
           observations: list[dict] | None = None) -> list[dict]:
    """Run one method over the sessions; returns per query {query_id, type, ranks of evidence (1-based or None)}.
    observations: extra memories (`observation_items`), each retrieving the turns it cites."""
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    # a scratch store, deleted at the end: no fsync per commit (synchronous OFF changes no result)
    store = MemoryStore(workdir, encoder=encoder, weights=check_weights(weights), update_access=False,
                        **{"synchronous": "OFF", **(store_kwargs or {})})
    extra = observations or []
    items = turns + extra
    events = sorted([(t["_ts"], 0, i) for i, t in enumerate(items)] + [(q["_ts"], 1, i) for i, q in enumerate(queries)])
    pending: list[tuple[dict, tuple[str, ...], bool]] = []   # (item, turn ids it retrieves, is an observation)
    sources_of_memory: dict[int, tuple[str, ...]] = {}   # memory id -> the turn ids it retrieves
    observation_ids: set[int] = set()
    next_turn: dict[str, int] = {}
    out = []
    for ts, kind, i in tqdm(events, desc=desc or "replay", unit="event", leave=False):
        if kind == 0:
            t = items[i]
            item = dict(text=t["text"], session=t["session_id"], timestamp=t["_ts"], speaker=t["speaker"],
                        image=t.get("image"), caption=t.get("caption"), source=t.get("turn_id"))
            if extra:   # turns keep their numbers; observations sit apart (never a turn's neighbour, nor each other's)
                sid = str(t["session_id"])
                if i < len(turns):
                    item["turn"] = next_turn.get(sid, 0)
                    next_turn[sid] = item["turn"] + 1
                else:
                    item.update(turn=-(10**9) - 2 * i, source="observation of " + ",".join(t["sources"]))
            pending.append((item, (t["turn_id"],) if i < len(turns) else tuple(t["sources"]), i >= len(turns)))
            continue
        if pending:
            for mid, (_, src, is_obs) in zip(store.add_many([p for p, _, _ in pending]), pending):
                sources_of_memory[mid] = src
                if is_obs:
                    observation_ids.add(mid)
            pending = []
        q = queries[i]
        if collect:  # raw components of every candidate, for re-ranking without replaying (no hit objects)
            scored = store.score_candidates(q["question"], now=q["_ts"], before=q["_ts"], session=q["session_id"])
            ranked_c = scored.take(scored.order()) if scored is not None else None
            ranked_ids = ranked_c.ids.tolist() if ranked_c is not None else []
        else:
            hits = store.search(query_text=q["question"], now=q["_ts"], before=q["_ts"], session=q["session_id"],
                                k=1_000_000, update_access=False)
            ranked_ids = [h.memory.id for h in hits]
        ranked = [sources_of_memory[m] for m in ranked_ids]
        pos: dict[str, int] = {}
        for r, src in enumerate(ranked, 1):
            for tid in src:
                pos.setdefault(tid, r)
        top = ["obs:" + ",".join(src) if mid in observation_ids else src[0]
               for mid, src in zip(ranked_ids[:5], ranked[:5])]
        out.append({"query_id": q["query_id"], "type": q.get("type", "all"), "candidates": len(ranked),
                    "ranks": [pos.get(e) for e in q["evidence"]], "top": top})
        if collect:
            ev = list(dict.fromkeys(str(e) for e in q["evidence"]))
            unit = {e: u for u, e in enumerate(ev)}
            out[-1]["raw"] = {c: ranked_c.raw[c] for c in COMPONENTS if c in ranked_c.raw} if ranked else {}
            out[-1]["is_evidence"] = np.array([any(tid in unit for tid in src) for src in ranked])
            if extra:
                pairs = [(j, unit[tid]) for j, src in enumerate(ranked) for tid in src if tid in unit]
                out[-1]["credits"] = (np.array([j for j, _ in pairs], dtype=np.int64),
                                      np.array([u for _, u in pairs], dtype=np.int64))
            out[-1]["neighbours"] = ranked_c.neighbours if ranked else (np.zeros(0, int), np.zeros(0, int))
            out[-1]["groups"] = ranked_c.groups if ranked else np.zeros(0, dtype=np.int64)
            out[-1]["session_id"] = q["session_id"]
            out[-1]["ids"] = ranked_c.ids if ranked else np.zeros(0, dtype=np.int64)
            if retrieve_k and ranked:
                store.mark_accessed(store.accessed_ids(ranked_c, retrieve_k), q["_ts"])
        elif retrieve_k:
            store.mark_accessed(store.accessed(hits, retrieve_k), q["_ts"])
    store.close()
    shutil.rmtree(workdir, ignore_errors=True)
    return out


# Coordinate ascent (relevance fixed at 1) over these values, two passes (`ascend`; its start is an argument).
TUNE_GRID = {"lexical": (0, 0.5, 1, 1.5, 2), "neighbours": (0, 0.25, 0.5, 0.75), "speaker": (0, 0.25, 0.5, 1, 2, 3),
             "temporal": (0, 0.25, 0.5, 1, 2), "dates": (0, 0.5, 1, 2), "recency": (0, 0.1, 0.25, 0.5),
             "frequency": (0, 0.1, 0.25, 0.5), "saliency": (0, 0.1, 0.25, 0.5), "episode": (0, 0.25, 0.5, 1)}
# The cues reach 2-3 since issue 25's second round: at 1 (the old top) a cue is outweighed by one standard deviation
# of the similarities; the nested LOO on the dev conversations chose speaker 2 and dates 2 (docs/memory.md).
# `diversity` is not in the grid: under nested LOO on LoCoMo dev it changed recall@5 by +0.001 and tripled the
# tuning time (docs/memory.md); give it explicitly (a method's weights, `search(weights=...)`) to use it.


def record(turns: list[dict], queries: list[dict], encoder: Any, workdir: str | Path, retrieve_k: int = RETRIEVE_K,
           store_kwargs: dict | None = None, weights: dict[str, float] | None = None,
           observations: list[dict] | None = None) -> list[dict]:
    """One replay that records every candidate's raw components per query (accesses by `weights`)."""
    return replay(turns, queries, encoder, weights or DEFAULT_WEIGHTS, workdir, retrieve_k, store_kwargs,
                  desc="record", collect=True, observations=observations)


class Packed:
    """Recorded queries packed for re-ranking many weight settings fast, with exactly `combine`'s numbers.

    The normalised components do not depend on the weights, so they are computed once per query and concatenated;
    a setting's scores are then one elementwise sum over all candidates (the same additions, in the same order, as
    `combine` makes per query). An evidence turn's rank is the number of candidates of its query that the search's
    order (score, then relevance, then smaller id) puts before it, counted over (evidence, candidate) pairs."""

    def __init__(self, recorded: list[dict]):
        from mmemory.memory.scoring import normalise

        self.n_queries = len(recorded)
        self.n_evidence = np.array([len(q["ranks"]) for q in recorded], dtype=np.float64)
        used = [(n, q) for n, q in enumerate(recorded) if q.get("raw")]
        comps = list(dict.fromkeys(c for _, q in used for c in q["raw"]))
        if any(set(q["raw"]) != set(comps) for _, q in used):
            raise ValueError("recorded queries carry different components; record them with one store")
        sizes = [len(q["ids"]) for _, q in used]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.size = int(starts[-1])
        self.norm = {c: np.concatenate([normalise(c, q["raw"][c]) for _, q in used]) if used else np.zeros(0)
                     for c in comps}
        self.relevance = np.concatenate([q["raw"]["relevance"] for _, q in used]) if used else np.zeros(0)
        self.ids = np.concatenate([q["ids"] for _, q in used]) if used else np.zeros(0, dtype=np.int64)
        glob = [np.where(nb >= 0, nb + starts[j], self.size) for j, (_, q) in enumerate(used)
                for nb in q["neighbours"]]
        self.prev = np.concatenate(glob[0::2]).astype(np.int64) if used else np.zeros(0, dtype=np.int64)
        self.next = np.concatenate(glob[1::2]).astype(np.int64) if used else np.zeros(0, dtype=np.int64)
        # episodes numbered across all queries (a query's episode numbers are offset past the previous query's)
        groups, offset = [], 0
        for _, q in used:
            g = np.asarray(q.get("groups", np.zeros(len(q["ids"]), dtype=np.int64)), dtype=np.int64)
            groups.append(g + offset)
            offset += int(g.max()) + 1 if len(g) else 0
        self.groups = np.concatenate(groups) if used else np.zeros(0, dtype=np.int64)
        ev, cand, owner = [], [], []   # owner: (query, candidate, evidence unit) of each credit
        units: dict[tuple[int, int], int] = {}   # (query, evidence turn of that query) -> unit number
        for j, (n, q) in enumerate(used):
            for e, u in zip(*credits(q)):
                others = np.delete(np.arange(sizes[j]), e)
                ev.append(np.full(len(others), len(owner)))
                cand.append(others + starts[j])
                owner.append((n, e + starts[j], units.setdefault((n, int(u)), len(units))))
        self.pair_ev = np.concatenate(ev) if ev else np.zeros(0, dtype=np.int64)
        self.pair_cand = np.concatenate(cand) if cand else np.zeros(0, dtype=np.int64)
        self.ev_pos = np.array([g for _, g, _ in owner], dtype=np.int64)
        self.ev_unit = np.array([u for _, _, u in owner], dtype=np.int64)
        self.unit_query = np.array([n for n, _ in units], dtype=np.int64)   # dicts keep insertion order
        self.pair_at = self.ev_pos[self.pair_ev] if len(owner) else np.zeros(0, dtype=np.int64)

    def scores(self, weights: dict[str, float]) -> np.ndarray:
        """Every candidate's score under `weights` (what `combine` gives per query)."""
        score = np.zeros(self.size)
        for name, w in weights.items():
            if w and name in self.norm:
                score += w * self.norm[name]
        w_nb = weights.get("neighbours", 0.0)
        if w_nb and self.size:
            padded = np.append(score, -np.inf)
            best = np.maximum(padded[self.prev], padded[self.next])
            score = score + w_nb * np.where(np.isfinite(best), best, 0.0)
        if weights.get("episode") and self.size:
            score = score + weights["episode"] * group_max(score, self.groups)
        if weights.get("diversity") and self.size:
            score = score - weights["diversity"] * rank_in_group(score, self.groups)
        return score

    def evidence_ranks(self, weights: dict[str, float]) -> np.ndarray:
        """0-based rank of every evidence turn of the recorded queries: the best rank of a candidate retrieving it."""
        s, r, i = self.scores(weights), self.relevance, self.ids
        c, e = self.pair_cand, self.pair_at
        before = (s[c] > s[e]) | ((s[c] == s[e]) & ((r[c] > r[e]) | ((r[c] == r[e]) & (i[c] < i[e]))))
        per_credit = np.bincount(self.pair_ev, weights=before, minlength=len(self.ev_pos)).astype(np.int64)
        best = np.full(len(self.unit_query), np.iinfo(np.int64).max)
        np.minimum.at(best, self.ev_unit, per_credit)
        return best

    def metric(self, weights: dict[str, float], metric: str = TUNE_METRIC) -> np.ndarray:
        """Per query `metric` (recall@k, or the reciprocal rank of the first evidence turn)."""
        ranks = self.evidence_ranks(weights)
        if "@" in metric:
            k = int(metric.split("@")[1])
            return np.bincount(self.unit_query, weights=ranks < k, minlength=self.n_queries) / self.n_evidence
        first = np.full(self.n_queries, np.inf)
        np.minimum.at(first, self.unit_query, ranks)
        return np.where(np.isfinite(first), 1.0 / (first + 1), 0.0)


def rerank_score(recorded: list[dict], weights: dict[str, float], metric: str = TUNE_METRIC,
                 packed: Packed | None = None) -> np.ndarray:
    """Per query `metric` when the recorded candidates are ranked by `weights` (no replay)."""
    return (packed or Packed(recorded)).metric(weights, metric)


def ascend(recorded: list[dict], metric: str = TUNE_METRIC, grid: dict[str, tuple] | None = None,
           start: dict[str, float] | None = None, passes: int = 2) -> tuple[dict[str, float], float, int]:
    """Coordinate ascent on the recorded queries: (weights, mean metric, settings tried)."""
    grid = grid or TUNE_GRID
    packed = Packed(recorded)
    w = {"relevance": 1.0, **{c: float((start or DEFAULT_WEIGHTS).get(c, 0.0)) for c in grid}}
    best, tried = float(rerank_score(recorded, w, metric, packed).mean()), 1
    for _ in range(passes):
        changed = False
        for c, values in grid.items():
            for v in values:
                if v == w[c]:
                    continue
                trial = {**w, c: float(v)}
                score = float(rerank_score(recorded, trial, metric, packed).mean())
                tried += 1
                if score > best + 1e-9:
                    w, best, changed = trial, score, True
        if not changed:
            break
    return {c: v for c, v in w.items() if v}, best, tried


def tune_weights(turns: list[dict], queries: list[dict], encoder: Any, workdir: str | Path,
                 retrieve_k: int = RETRIEVE_K, store_kwargs: dict | None = None, grid: dict[str, tuple] | None = None,
                 metric: str = TUNE_METRIC, observations: Any = None) -> tuple[dict[str, float], dict]:
    """Weights (relevance fixed at 1) that maximise `metric` on these (training) sessions.

    The sessions are replayed once with the default weights to record every candidate's raw components; each
    weight setting then re-ranks the recorded candidates. The frequency component is therefore the one that this
    replay's retrievals produced, an approximation of the access counts the tuned weights would produce themselves.
    observations: an observation extractor (as in `evaluate`; None: none).
    """
    cached = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)
    extra = observation_items(turns, observations) if observations is not None else None
    recorded = record(turns, queries, cached, workdir, retrieve_k, store_kwargs, observations=extra)
    weights, score, tried = ascend(recorded, metric, grid)
    info = {"tuned_on_queries": len(recorded), "tuned_metric": metric, "tuned_score": score,
            "settings_tried": tried}
    logger.info("tuned weights %s (%s %.3f on %d training queries, %d settings)", weights, metric, score,
                len(recorded), tried)
    return weights, info


def simulate(recorded: list[dict], weights: dict[str, float], retrieve_k: int = RETRIEVE_K) -> list[dict]:
    """What a replay with `weights` returns, from one recording: exact, because frequency is the only component
    that depends on earlier searches, and what a search counts as accessed is ranked without it. So each method's
    access counts are re-run here, in the recording's time order, and the rest is the recorded components."""
    from mmemory.memory.scoring import frequency

    weights = check_weights(weights)
    counts: dict[int, int] = {}
    out = []
    for q in recorded:
        if not q.get("raw"):
            out.append({k: q[k] for k in ("query_id", "type", "candidates", "ranks", "top")})
            continue
        raw = dict(q["raw"])
        raw["frequency"] = frequency(np.array([counts.get(int(m), 0) for m in q["ids"]]))
        use = {c: w for c, w in weights.items() if c in raw or c in CONTEXT}
        score, _ = combine(raw, use, q["neighbours"], q.get("groups"))
        order = np.lexsort((q["ids"], -raw["relevance"], -score))
        pos = evidence_ranks(q, order)
        out.append({"query_id": q["query_id"], "type": q["type"], "candidates": q["candidates"],
                    "ranks": pos + [None] * (len(q["ranks"]) - len(pos)), "session_id": q["session_id"]})
        if retrieve_k:
            if weights.get("frequency"):
                rest = {c: w for c, w in use.items() if c != "frequency"}
                counted = combine(raw, rest, q["neighbours"], q.get("groups"))[0] if any(
                    v for c, v in rest.items() if c not in CONTEXT) else np.zeros(len(order))
                order = np.lexsort((q["ids"], -raw["relevance"], -counted))
            for m in q["ids"][order[:retrieve_k]]:
                counts[int(m)] = counts.get(int(m), 0) + 1
    return out


NEUTRAL_WEIGHTS = {"relevance": 1.0}   # what `evaluate` records accesses with (no choice made on data)

# Nested leave-one-session-out chooses among these tuning procedures: a neutral start (never the shipped default,
# which was itself chosen on data) and the coordinate ascent's grid, which holds the cue switches (speaker and
# temporal at 0 are off), the neighbour weight and the episode terms.
PROCEDURES: dict[str, tuple[dict[str, float], dict[str, tuple]]] = {
    "from relevance": ({"relevance": 1.0}, TUNE_GRID),
    "from hybrid": ({"relevance": 1.0, "lexical": 1.0}, TUNE_GRID),
}


def choose_procedure(recorded: list[dict], metric: str = TUNE_METRIC, procedures: dict | None = None
                     ) -> tuple[str, dict[str, float]]:
    """The procedure (start, grid) whose leave-one-session-out `metric` on `recorded` is best (ties: the first
    listed): each session's queries scored by the weights that procedure tunes on the others. Returns (name, {name:
    inner LOO score}); with fewer than two sessions nothing can be held out and the first procedure is taken."""
    procedures = procedures or PROCEDURES
    sessions = list(dict.fromkeys(q["session_id"] for q in recorded))
    if len(sessions) < 2:
        return next(iter(procedures)), {}
    inner: dict[str, float] = {}
    for name, (start, grid) in procedures.items():
        per_query = []
        for sid in sessions:
            train = [q for q in recorded if q["session_id"] != sid]
            held = [q for q in recorded if q["session_id"] == sid]
            weights = ascend(train, metric, grid, start=start)[0]
            per_query.append(rerank_score(held, weights, metric))
        inner[name] = float(np.concatenate(per_query).mean())
    best = max(inner, key=lambda n: (inner[n], -list(procedures).index(n)))
    return best, inner


def tune_nested(recorded: list[dict], metric: str = TUNE_METRIC, procedures: dict | None = None
                ) -> tuple[dict[str, float], dict]:
    """Weights for `recorded` with every choice made on it: the procedure by inner leave-one-session-out
    (`choose_procedure`), then that procedure's coordinate ascent on all of it. Returns (weights, info)."""
    procedures = procedures or PROCEDURES
    name, inner = choose_procedure(recorded, metric, procedures)
    start, grid = procedures[name]
    weights, score, tried = ascend(recorded, metric, grid, start=start)
    return weights, {"procedure": name, "start": dict(start), "inner_loo": inner, f"train {metric}": score,
                     "settings_tried": tried, "queries": len(recorded),
                     "sessions": list(dict.fromkeys(q["session_id"] for q in recorded))}


def tune_loo(recorded: list[dict], metric: str = TUNE_METRIC, procedures: dict | None = None,
             retrieve_k: int = RETRIEVE_K) -> tuple[list[dict], dict]:
    """Nested leave-one-session-out: each session's queries ranked by weights chosen on the OTHER sessions only,
    where the choice includes the tuning procedure (its start and grid: `tune_nested` on the others, which picks the
    procedure by a leave-one-out inside them). Nothing the scored session holds decides anything, and no start is a
    weight setting that was chosen by looking at it.

    Returns (per-query results like `replay`'s, {session: {"weights", "procedure", ...}}), plus, under the key
    "all", what the same procedure chooses on every session (the candidate for a shipped default). With one session
    there is nothing to tune on: the first procedure's start scores it."""
    sessions = list(dict.fromkeys(q["session_id"] for q in recorded))
    per_query, folds = [], {}
    for sid in sessions:
        train = [q for q in recorded if q["session_id"] != sid]
        held = [q for q in recorded if q["session_id"] == sid]
        if train:
            weights, info = tune_nested(train, metric, procedures)
        else:
            weights, info = dict(next(iter((procedures or PROCEDURES).values()))[0]), {"procedure": "none"}
        folds[sid] = {"weights": weights, **info}
        per_query += [dict(r, session_id=sid) for r in simulate(held, weights, retrieve_k)]
        logger.info("nested loo fold %s: %s (procedure %s) tuned on %d queries of the other sessions", sid, weights,
                    info.get("procedure"), len(train))
    if len(sessions) > 1:
        weights, info = tune_nested(recorded, metric, procedures)
        folds["all"] = {"weights": weights, **info}
    return per_query, folds


def summarise(per_query: list[dict], ks=KS) -> dict:
    """Mean recall@k (|evidence in top-k| / |evidence|), MRR (first evidence) and the query count."""
    if not per_query:
        return {**{f"recall@{k}": 0.0 for k in ks}, "mrr": 0.0, "queries": 0}
    rec = {k: np.mean([sum(r is not None and r <= k for r in q["ranks"]) / len(q["ranks"]) for q in per_query])
           for k in ks}
    rr = [1.0 / min(r for r in q["ranks"] if r is not None) if any(r is not None for r in q["ranks"]) else 0.0
          for q in per_query]
    return {**{f"recall@{k}": float(rec[k]) for k in ks}, "mrr": float(np.mean(rr)), "queries": len(per_query)}


def load_text_cache(cached: CachedEncoder, path: str | Path) -> int:
    """Fill `cached` with the text embeddings saved at `path` by the same encoder (same fingerprint: kind, path,
    weights' sizes and times); returns how many were loaded (0 when the file is missing or from another encoder)."""
    path, want = Path(path), getattr(cached.encoder, "fingerprint", "")
    if not want or not path.is_file():
        return 0
    with np.load(path, allow_pickle=False) as z:
        if str(z["fingerprint"]) != want or z["vectors"].shape[1:] != (cached.dim,):
            logger.warning("embedding cache %s is from another encoder (%s); ignoring it", path, z["fingerprint"])
            return 0
        for t, v in zip(z["texts"].tolist(), z["vectors"]):
            cached._text.setdefault(t, v)
        return len(z["texts"])


def save_text_cache(cached: CachedEncoder, path: str | Path) -> None:
    """Write every text embedding of `cached` to `path` (npz, atomically), tagged with the encoder's fingerprint."""
    want = getattr(cached.encoder, "fingerprint", "")
    if not want or not cached._text:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    texts = list(cached._text)
    np.savez(tmp, fingerprint=np.array(want), texts=np.array(texts, dtype=np.str_),
             vectors=np.stack([cached._text[t] for t in texts]).astype(np.float32))
    tmp.replace(path)


def evaluate(turns: list[dict], queries: list[dict], encoder: Any, methods: dict[str, dict[str, float]] | None = None,
             workdir: str | Path = "/tmp/mmemory-memory-eval", retrieve_k: int = RETRIEVE_K,
             store_kwargs: dict | None = None,
             ks=KS, tune: str | None = None, embedding_cache: str | Path | None = None,
             observations: Any = None) -> dict:
    """All methods side by side: {"methods": {name: summary}, "by_type": {name: {type: summary}}, "per_query"}.
    tune="loo" adds `tuned (loo)` (see the module docstring); result["loo_weights"] gives each session's weights.
    embedding_cache: an .npz file of text embeddings reused across runs with the same encoder (read, then updated).
    observations: an observation extractor (`mmemory.memory.observations`, off by default): its observations of
    each window of turns become extra memories that retrieve the turns they cite; result["observations"] counts."""
    methods = methods or MemoryConfig().methods  # config memory.methods
    cached = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)
    n_cached = load_text_cache(cached, embedding_cache) if embedding_cache else 0
    extra = observation_items(turns, observations) if observations is not None else None
    texts = [memory_key(t["speaker"], str(t["text"]).strip(), (t.get("caption") or "").strip() or None)
             for t in turns] + [q["question"] for q in queries] + [
        memory_key(o["speaker"], o["text"], None) for o in extra or []]
    from threading import Thread

    from mmemory.memory import lexical

    stemmer = Thread(target=lexical._porter, daemon=True)   # import nltk (seconds) while the encoder works
    stemmer.start()
    cached.warm(sorted(set(texts), key=len), [t["image"] for t in turns if t.get("image")])  # less padding
    stemmer.join()
    if embedding_cache and len(cached._text) > n_cached:
        save_text_cache(cached, embedding_cache)
    result = {"methods": {}, "by_type": {}, "per_query": {}}
    t0 = time.perf_counter()
    # the recording's accesses (the frequency that tuning re-ranks with) come from relevance alone, so that no figure
    # of the nested LOO depends on the shipped default; every method's own accesses are re-run by `simulate`
    recorded = record(turns, queries, cached, Path(workdir) / "record", retrieve_k, store_kwargs,
                      weights=NEUTRAL_WEIGHTS, observations=extra)
    if observations is not None:
        result["observations"] = dict(observations.counts, memories=len(extra))
    logger.info("recorded %d queries through the store in %.1fs", len(recorded), time.perf_counter() - t0)
    for name, weights in methods.items():
        t0 = time.perf_counter()
        per_query = simulate(recorded, weights, retrieve_k)
        dt = time.perf_counter() - t0
        _add(result, name, per_query, ks)
        logger.info("%-12s %s (%.1fs, %.0f queries/s)", name,
                    {k: round(v, 3) for k, v in result["methods"][name].items()}, dt, len(queries) / max(dt, 1e-9))
    if tune == "loo":
        t0 = time.perf_counter()
        per_query, folds = tune_loo(recorded, retrieve_k=retrieve_k)
        name = "tuned (nested loo)"
        _add(result, name, per_query, ks)
        result["loo_weights"] = folds
        logger.info("%-12s %s (%.1fs)", name, {k: round(v, 3) for k, v in result["methods"][name].items()},
                    time.perf_counter() - t0)
    elif tune is not None:
        raise ValueError(f"tune must be None or 'loo', got {tune!r}")
    result["images_embedded"] = cached.images_supported
    return result


def _add(result: dict, name: str, per_query: list[dict], ks=KS) -> None:
    result["methods"][name] = summarise(per_query, ks)
    types = sorted({q["type"] for q in per_query})
    result["by_type"][name] = {t: summarise([q for q in per_query if q["type"] == t], ks) for t in types}
    result["per_query"][name] = per_query


def metrics_json(result: dict, methods: dict[str, dict[str, float]], info: dict, chosen: str | None = None,
                 val: dict[str, dict] | None = None, data: str = "memory sessions") -> dict:
    """The report's metrics.json: the ablation table, a per-type recall@5 table and headline numbers.
    `chosen`: the method picked on val beforehand (`val`: its summaries), marked in the table and the headline;
    `data` names the sessions the table was computed on."""
    table = []
    for name, s in result["methods"].items():
        row = {"method": name + (" (chosen on val)" if name == chosen else ""),
               "weights": " ".join(f"{c}={w:g}" for c, w in methods[name].items()) if name in methods
               else "per session, tuned on the others",
               **{k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()}}
        if val is not None and name in val:
            row["val recall@5"] = round(val[name]["recall@5"], 4)
        table.append(row)
    types = sorted({t for by in result["by_type"].values() for t in by})
    by_type = [{"method": name, **{f"{t} r@5": round(by[t]["recall@5"], 4) for t in types if t in by},
                **{f"{t} n": by[t]["queries"] for t in types if t in by}}
               for name, by in result["by_type"].items()]
    head = {"memory relevance r@5": result["methods"]["relevance"]["recall@5"]} if "relevance" in result["methods"] \
        else {}
    if chosen:
        head[f"memory chosen-on-val ({chosen}) r@5"] = result["methods"][chosen]["recall@5"]
    # each headline beside its controls: BM25 (words alone, no model) and, for the chosen method, relevance alone
    r5 = {m: s["recall@5"] for m, s in result["methods"].items()}
    controls = [(m, label) for m, label in (("bm25", "BM25 (words, no model)"), ("relevance", "relevance alone"))
                if m in r5]
    head_controls = {k: [{"control": label, "value": r5[m]} for m, label in controls if f"memory {m} r@5" != k]
                     for k in head}
    return {"tables": {f"Retrieval on {data} (mean over queries)": table,
                       f"Recall@5 by query type ({data})": by_type},
            "headline": head, "headline_controls": {k: c for k, c in head_controls.items() if c},
            **({"chosen_method": chosen} if chosen else {}), **info}


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
