"""Retrieval scoring: a fused similarity (dense relevance + lexical BM25) plus bounded priors, and neighbour context.

    score = relevance_z * w_rel + lexical_z * w_lex              similarity: z-scored over the candidates
          + w_spk * speaker + w_time * temporal                 query cues: 0 or 1
          + w_rec * recency + w_freq * frequency + w_sal * saliency   priors on fixed scales in [0, 1]
    score += w_nb * max(score of the previous turn, score of the next turn)      (neighbours)

Why not min-max everything (Generative Agents): min-max stretches a component whose spread is tiny to [0, 1]. On a
conversation of months with a 24-hour recency half-life, every memory but the last day's has recency ~0, and min-max
turned the last hour into the strongest signal there is (recall@5 fell from 0.17 to 0.01 on LoCoMo). Priors therefore
keep their own scale: recency 0.5 ** (age / half-life), frequency log(1 + n) / (1 + log(1 + n)), saliency
(rating - 1) / 9. Similarities have no fixed scale (cosines cluster, BM25 is unbounded), so they are z-scored over the
candidates: the fusion of the two is the z-score sum that long-conversation baselines use.
"""
from __future__ import annotations

import math

import numpy as np

SIMILARITIES = ("relevance", "lexical")
CUES = ("speaker", "temporal")
PRIORS = ("recency", "frequency", "saliency")
COMPONENTS = (*SIMILARITIES, *CUES, *PRIORS, "neighbours")

# The shipped default: chosen by leave-one-conversation-out on LoCoMo dev (docs/memory.md) and at or above relevance
# alone there; the priors keep small weights, so that they break ties among similar turns and never dominate.
DEFAULT_WEIGHTS: dict[str, float] = {"relevance": 1.0, "lexical": 1.0, "neighbours": 0.5, "speaker": 0.5,
                                     "temporal": 0.25, "recency": 0.1, "frequency": 0.1, "saliency": 0.1}


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Validate a {component: weight} mapping; unknown names and negative or all-zero weights are errors."""
    unknown = set(weights) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown scoring component(s) {sorted(unknown)}; use {', '.join(COMPONENTS)}")
    bad = {k: v for k, v in weights.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)}
    if bad:
        raise ValueError(f"scoring weights must be finite and >= 0, got {bad}")
    if not any(v > 0 for c, v in weights.items() if c != "neighbours"):
        raise ValueError(f"scoring weights {weights} are all zero; give at least one component a positive weight")
    return {k: float(v) for k, v in weights.items()}


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the candidates; a constant component carries no information and becomes 0."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


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


def combine(raw: dict[str, np.ndarray], weights: dict[str, float], neighbours: tuple[np.ndarray, np.ndarray] | None
            = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of normalised components; returns (score, normalised components).

    `neighbours`: (previous, next) candidate index per candidate (-1: not a candidate); with a `neighbours` weight,
    a turn also scores by its best adjacent turn (an answer often spans a question and its reply)."""
    norm = {name: normalise(name, values) for name, values in raw.items()}
    n = len(next(iter(raw.values()))) if raw else 0
    score = np.zeros(n)
    for name, w in weights.items():
        if w and name in norm:
            score += w * norm[name]
    w_nb = weights.get("neighbours", 0.0)
    if w_nb and neighbours is not None and n:
        prev, nxt = neighbours
        padded = np.append(score, -np.inf)  # index -1: no neighbour
        best = np.maximum(padded[prev], padded[nxt])
        score = score + w_nb * np.where(np.isfinite(best), best, 0.0)
    return score, norm
