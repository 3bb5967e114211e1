"""Seed-to-seed spread: a trained row of a table is the mean over its training seeds (config `train_seeds`), with the
sample standard deviation beside it, and a difference between two rows is only called a gain when it is larger than
the spread of that difference.
"""
from __future__ import annotations

import math
from numbers import Number


def _numeric(x) -> bool:
    return isinstance(x, Number) and not isinstance(x, bool) and x is not None and math.isfinite(float(x))


def mean_over_seeds(runs: list[dict]) -> dict:
    """One dict like the runs: numeric values (also in nested dicts) averaged over the runs, others (and values
    that agree across the runs, such as counts) from the first."""
    if not runs:
        raise ValueError("mean_over_seeds needs at least one run")
    out = {}
    for key, first in runs[0].items():
        values = [r.get(key) for r in runs]
        if isinstance(first, dict) and all(isinstance(v, dict) for v in values):
            out[key] = mean_over_seeds(values)
        elif all(_numeric(v) for v in values) and len(set(values)) > 1:
            out[key] = sum(float(v) for v in values) / len(values)
        else:
            out[key] = first
    return out


def std_over_seeds(runs: list[dict], key_path: tuple[str, ...]) -> float | None:
    """Sample standard deviation of one (nested) value over the runs; None with fewer than two runs."""
    values = []
    for r in runs:
        v = r
        for k in key_path:
            v = v.get(k) if isinstance(v, dict) else None
        if _numeric(v):
            values.append(float(v))
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def difference_spread(std_a: float | None, std_b: float | None) -> float | None:
    """The spread of a difference of two means over seeds (their standard deviations added in quadrature).
    None when neither row has a spread (one seed); a row without one (untrained, deterministic) counts as 0."""
    if std_a is None and std_b is None:
        return None
    return math.sqrt((std_a or 0.0) ** 2 + (std_b or 0.0) ** 2)


def verdict(delta: float, spread: float | None) -> str:
    """How a table names a difference: a gain or a loss only when it is larger than the spread."""
    if spread is None:
        return "one seed: spread unknown"
    if abs(delta) <= spread:
        return "within the spread"
    return "gain" if delta > 0 else "loss"


def seed_note(n_seeds: int) -> str:
    """The line a table carries about its seeds."""
    if n_seeds < 2:
        return ("one training seed (train_seeds has one entry): no seed-to-seed spread, so no difference is called a "
                "gain; run with --config 'train_seeds=[0,1,2]' for the spread")
    return f"trained rows: mean over {n_seeds} training seeds; spread = sample standard deviation over the seeds"


def differences_table(means: dict[str, dict], stds: dict[str, dict], comparisons: list[tuple[str, str, str]],
                      metrics: list[tuple[tuple[str, ...], str]]) -> list[dict]:
    """Long-format rows (comparison, metric, Δ, spread, verdict) for each (a, b, what a − b isolates) whose rows
    exist. `means`/`stds`: {row: values} and {row: {key_path: std or None}}; `metrics`: (key path, label)."""
    out = []
    for a, b, what in comparisons:
        if a not in means or b not in means:
            continue
        for path, label in metrics:
            va, vb = means[a], means[b]
            for k in path:
                va = va.get(k) if isinstance(va, dict) else None
                vb = vb.get(k) if isinstance(vb, dict) else None
            if not (_numeric(va) and _numeric(vb)):
                continue
            delta = float(va) - float(vb)
            spread = difference_spread(stds.get(a, {}).get(path), stds.get(b, {}).get(path))
            out.append({"comparison": f"{a} − {b}", "isolates": what, "metric": label, "Δ": round(delta, 4) + 0.0,
                        "spread": None if spread is None else round(spread, 4), "verdict": verdict(delta, spread)})
    return out
