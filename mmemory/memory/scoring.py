"""Retrieval scoring: relevance, recency, frequency, saliency (and an optional lexical BM25 component).

Each component is min-max normalised over the candidates and the weighted sum ranks them, as in Generative Agents
(Park et al., 2023: recency + importance + relevance, each min-max normalised). Recency is an exponential decay with a
half-life in hours or turns; frequency is log(1 + access count); saliency is a 1-10 rating stored with each memory.
"""
from __future__ import annotations

import math
import re

import numpy as np

COMPONENTS = ("relevance", "recency", "frequency", "saliency", "lexical")

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words: the BM25 tokenizer (needs no nltk data)."""
    return _TOKEN.findall(text.lower())


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Validate a {component: weight} mapping; unknown names and negative or all-zero weights are errors."""
    unknown = set(weights) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown scoring component(s) {sorted(unknown)}; use {', '.join(COMPONENTS)}")
    bad = {k: v for k, v in weights.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)}
    if bad:
        raise ValueError(f"scoring weights must be finite and >= 0, got {bad}")
    if not any(v > 0 for v in weights.values()):
        raise ValueError(f"scoring weights {weights} are all zero; give at least one component a positive weight")
    return {k: float(v) for k, v in weights.items()}


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the candidates; a constant component carries no information and becomes 0."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def recency(age: np.ndarray, half_life: float) -> np.ndarray:
    """Exponential decay 0.5 ** (age / half_life); age in the half-life's unit, clipped at 0."""
    if half_life <= 0:
        raise ValueError(f"recency half-life must be > 0, got {half_life}")
    return np.power(0.5, np.clip(np.asarray(age, dtype=np.float64), 0, None) / half_life)


def frequency(access_count: np.ndarray) -> np.ndarray:
    return np.log1p(np.asarray(access_count, dtype=np.float64))


def bm25_scores(query: str, docs: list[str]) -> np.ndarray:
    """Okapi BM25 (rank-bm25) of the query against the candidate texts."""
    from rank_bm25 import BM25Okapi

    if not docs:
        return np.zeros(0)
    corpus = [tokenize(d) or ["<empty>"] for d in docs]
    return np.asarray(BM25Okapi(corpus).get_scores(tokenize(query)), dtype=np.float64)


def combine(raw: dict[str, np.ndarray], weights: dict[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of min-max normalised components; returns (score, normalised components)."""
    norm = {name: minmax(values) for name, values in raw.items()}
    n = len(next(iter(raw.values()))) if raw else 0
    score = np.zeros(n)
    for name, w in weights.items():
        if w:
            score += w * norm[name]
    return score, norm
