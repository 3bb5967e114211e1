"""Retrieval scoring: a fused similarity (dense relevance + lexical BM25) plus bounded priors, and neighbour context.

    score = relevance_z * w_rel + lexical_z * w_lex              similarity: z-scored over the candidates
          + w_spk * speaker + w_time * temporal + w_date * dates  query cues: 0 or 1
          + w_rec * recency + w_freq * frequency + w_sal * saliency   priors on fixed scales in [0, 1]
    score += w_nb * max(score of the previous turn, score of the next turn)      (neighbours)
    score += w_ep * best score of the turn's episode                          (episode: session-then-turn)
    score -= w_div * number of better-scored turns of the same episode        (diversity across episodes)

The cues: `speaker` (the question names the memory's speaker), `temporal` (a "when" question and a memory that
places something in time, or a question naming a month and a memory from then) and `dates` (a period the question
names, "on 3 June, 2023" or "in June", is the memory's own day or one its text refers to, with relative dates such
as "yesterday" or "two weeks ago" resolved against the memory's timestamp: `lexical.memory_periods`).

An episode is a run of turns of one session with no gap longer than an hour between consecutive turns (a sitting
of a long conversation, one dialogue of a chained toy session); it is found from the timestamps (`episodes`), so no
dataset's turn numbering is read. `episode` lifts every turn of the episode whose best turn matches the question
(score the sessions, then the turns within the best ones, in one sum); `diversity` demotes the 2nd, 3rd, ... turn of
one episode, so that the top k spans more episodes (a per-episode cap when w_div is large).

Why not min-max everything (Generative Agents): min-max stretches a component whose spread is tiny to [0, 1]. On a
conversation of months with a 24-hour recency half-life, every memory but the last day's has recency ~0, and min-max
turned the last hour into the strongest signal there is (recall@5 fell from 0.17 to 0.01 on LoCoMo). Priors therefore
keep their own scale: recency 0.5 ** (age / half-life), frequency log(1 + n) / (1 + log(1 + n)), saliency
(rating - 1) / 9. Similarities have no fixed scale (cosines cluster, BM25 is unbounded), so they are z-scored over the
candidates: the fusion of the two is the z-score sum that long-conversation baselines use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mmemory.config import ConfigError, StrictConfig

SIMILARITIES = ("relevance", "lexical")
CUES = ("speaker", "temporal", "dates")
PRIORS = ("recency", "frequency", "saliency")
CONTEXT = ("neighbours", "episode", "diversity")   # terms on the combined score, applied in this order
COMPONENTS = (*SIMILARITIES, *CUES, *PRIORS, *CONTEXT)
EPISODE_GAP_HOURS = 1.0   # a longer gap between consecutive turns of a session starts a new episode


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Validate a {component: weight} mapping; unknown names and negative or all-zero weights are errors."""
    unknown = set(weights) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown scoring component(s) {sorted(unknown)}; use {', '.join(COMPONENTS)}")
    bad = {k: v for k, v in weights.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)}
    if bad:
        raise ValueError(f"scoring weights must be finite and >= 0, got {bad}")
    if not any(v > 0 for c, v in weights.items() if c not in CONTEXT):
        raise ValueError(f"scoring weights {weights} are all zero; give at least one component a positive weight")
    return {k: float(v) for k, v in weights.items()}


@dataclass
class MemoryConfig(StrictConfig):
    """config memory (its scalar keys and the methods; encoder, index, sessions, tune, observations and reminder are
    their own sections). Defaults: config.yaml's; activate is read by the workflow (rules/memory.smk)."""

    SECTION = "memory"

    activate: bool = True  # run the memory stages
    half_life: float = 24.0  # recency halves every half_life recency units
    recency_unit: str = "hours"  # hours (timestamps) | turns (turn numbers) | span (fraction of the session so far)
    retrieve_k: int = 5  # after each evaluation query, its top retrieve_k memories count as accessed
    # the ablation: method name -> component weights (relevance and lexical z-scored; the priors on their own 0-1
    # scale). `default` is the shipped DEFAULT_WEIGHTS: what the nested leave-one-conversation-out procedure
    # (`evaluate.tune_loo`) picks on all three LoCoMo dev conversations (its held-out figure: docs/memory.md)
    methods: dict[str, dict[str, float]] = field(default_factory=lambda: {
        "relevance": {"relevance": 1.0},
        "+recency": {"relevance": 1.0, "recency": 1.0},
        "+frequency": {"relevance": 1.0, "frequency": 1.0},
        "+saliency": {"relevance": 1.0, "saliency": 1.0},
        "full": {"relevance": 1.0, "recency": 1.0, "frequency": 1.0, "saliency": 1.0},
        "bm25": {"lexical": 1.0},
        "hybrid": {"relevance": 1.0, "lexical": 1.0},
        "default": {"relevance": 1.0, "lexical": 0.5, "neighbours": 0.5, "speaker": 2.0, "temporal": 2.0,
                    "dates": 2.0, "saliency": 0.5, "episode": 1.0},
    })

    def __post_init__(self):
        super().__post_init__()
        for name, weights in self.methods.items():
            try:
                check_weights(weights)
            except ValueError as e:
                raise ConfigError(f"config {self.SECTION}: methods.{name}: {e}") from e


@dataclass
class TuneConfig(StrictConfig):
    """config memory.tune: the `tuned` method of the workflow's ablation (defaults: config.yaml's)."""

    SECTION = "memory.tune"

    sessions: int = 12  # training sessions to tune the weights on (0: no tuned method)
    metric: str = "recall@5"  # what the tuning maximises, and what picks the chosen method on val (recall@k | mrr)


# The store's weights when none are given: the `default` method above.
DEFAULT_WEIGHTS: dict[str, float] = MemoryConfig().methods["default"]


def zscore(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std over the candidates; a constant component carries no information and becomes 0."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def recency(age: np.ndarray, half_life: float) -> np.ndarray:
    """Exponential decay 0.5 ** (age / half_life); age in the half-life's unit, clipped at 0."""
    if half_life <= 0:
        raise ValueError(f"recency half-life must be > 0, got {half_life}")
    return np.power(0.5, np.clip(np.asarray(age, dtype=np.float64), 0, None) / half_life)


def frequency(access_count: np.ndarray) -> np.ndarray:
    """log(1 + n) / (1 + log(1 + n)): 0 for never, 0.41 for once, bounded by 1 however often."""
    f = np.log1p(np.asarray(access_count, dtype=np.float64))
    return f / (1.0 + f)


def saliency(rating: np.ndarray) -> np.ndarray:
    """A 1-10 rating on [0, 1]."""
    return (np.asarray(rating, dtype=np.float64) - 1.0) / 9.0


def normalise(name: str, values: np.ndarray) -> np.ndarray:
    """A raw component on the scale it is weighted on (see the module docstring)."""
    if name in SIMILARITIES:
        return zscore(values)
    return np.asarray(values, dtype=np.float64)


def episodes(sessions: Sequence, timestamps: np.ndarray, gap_hours: float = EPISODE_GAP_HOURS) -> np.ndarray:
    """Episode number (0, 1, ...) per item: items of one session whose consecutive timestamps (unix seconds, in time
    order) are at most `gap_hours` apart share one; a new session or a longer gap starts the next."""
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    sess = np.unique(np.asarray([str(s) for s in sessions]), return_inverse=True)[1]
    order = np.lexsort((ts, sess))
    new = np.r_[False, (np.diff(sess[order]) != 0) | (np.diff(ts[order]) > 3600.0 * gap_hours)]
    out = np.empty(len(ts), dtype=np.int64)
    out[order] = np.cumsum(new)
    return out


def rank_in_group(score: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """0-based rank of each item among the items of its group, best score first (ties: earlier position first)."""
    if len(score) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(len(score)), -score, groups))
    g = groups[order]
    start = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    within = np.arange(len(g)) - np.repeat(start, np.diff(np.r_[start, len(g)]))
    out = np.empty(len(score), dtype=np.int64)
    out[order] = within
    return out


def group_max(score: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The best score of each item's group, per item."""
    if len(score) == 0:
        return np.zeros(0)
    best = np.full(int(groups.max()) + 1, -np.inf)
    np.maximum.at(best, groups, score)
    return best[groups]


def context_terms(score: np.ndarray, weights: dict[str, float], neighbours: tuple[np.ndarray, np.ndarray] | None,
                  groups: np.ndarray | None) -> np.ndarray:
    """The neighbours, episode and diversity terms (module docstring) added to a combined score."""
    w_nb = weights.get("neighbours", 0.0)
    if w_nb and neighbours is not None and len(score):
        prev, nxt = neighbours
        padded = np.append(score, -np.inf)  # index -1: no neighbour
        best = np.maximum(padded[prev], padded[nxt])
        score = score + w_nb * np.where(np.isfinite(best), best, 0.0)
    if groups is not None and len(score):
        if weights.get("episode"):
            score = score + weights["episode"] * group_max(score, groups)
        if weights.get("diversity"):
            score = score - weights["diversity"] * rank_in_group(score, groups)
    return score


def combine(raw: dict[str, np.ndarray], weights: dict[str, float], neighbours: tuple[np.ndarray, np.ndarray] | None
            = None, groups: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of normalised components; returns (score, normalised components).

    `neighbours`: (previous, next) candidate index per candidate (-1: not a candidate); with a `neighbours` weight,
    a turn also scores by its best adjacent turn (an answer often spans a question and its reply).
    `groups`: episode number per candidate (`episodes`), read by the `episode` and `diversity` weights."""
    norm = {name: normalise(name, values) for name, values in raw.items()}
    n = len(next(iter(raw.values()))) if raw else 0
    score = np.zeros(n)
    for name, w in weights.items():
        if w and name in norm:
            score += w * norm[name]
    return context_terms(score, weights, neighbours, groups), norm
