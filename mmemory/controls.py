"""Positive controls: the claims a stage's run makes, each with the numbers that decide whether it holds.

Every stage writes a `positive_controls` list in its `metrics.json`; the report opens with all of them in one table,
"What this run shows" (`mmemory.report`). One entry:

    {"claim": "finetuned beats the question prior (current-picture questions)",
     "treatment": "finetuned", "control": "question prior", "metric": "exact match",
     "relation": "greater",            # greater | at_least | within (below)
     "treatment_value": 0.61, "control_value": 0.35, "difference": 0.26,
     "spread": 0.02,                   # sample sd of the difference over training seeds (None with one seed)
     "ci95": 0.08,                     # half-width of the 95% interval of the difference over test items
     "n": 80, "n_seeds": 3, "holds": true}

For a metric where lower is better (an error such as MAE), `claim(..., lower_is_better=True)` keeps the treatment
the method the claim is about and takes the difference the other way, control - treatment: the error the
treatment saves. The entry then carries `"lower_is_better": true`.

When a claim holds (`decide`):
- `greater`: the difference is larger than both its seed spread and its 95% interval;
- `at_least`: the treatment is not below the control by more than the larger of the two (oracle ≥ retrieved);
- `within`: the difference is no larger than the larger of the two (a negative control stays at its baseline).
A spread that is unknown (one seed) counts as 0, and the entry keeps it None so the table says so.

The 95% interval of a paired difference over items is the normal interval of the mean per-item difference, where each
item's value is first averaged over the seeds (the seeds score the same items: pooling them would narrow it falsely).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

RELATIONS = ("greater", "at_least", "within")
Z95 = 1.959963984540054


def _mean(xs: Sequence[float]) -> float:
    return float(statistics.fmean(xs))


def paired_ci95(treatment: Sequence[float], control: Sequence[float]) -> float:
    """Half-width of the 95% normal interval of mean(treatment - control) over paired items (0 for one item)."""
    if len(treatment) != len(control):
        raise ValueError(f"paired_ci95: {len(treatment)} treatment items against {len(control)} control items")
    d = [float(a) - float(b) for a, b in zip(treatment, control)]
    if len(d) < 2:
        return 0.0
    return Z95 * statistics.stdev(d) / math.sqrt(len(d))


def decide(relation: str, difference: float, spread: float | None, ci95: float | None) -> bool:
    """Whether a claim holds (module docstring)."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}: use one of {RELATIONS}")
    margin = max(spread or 0.0, ci95 or 0.0)
    if relation == "greater":
        return difference > margin
    if relation == "at_least":
        return difference >= -margin
    return abs(difference) <= margin


def claim(claim: str, treatment: str, control: str, metric: str, treatment_values: Sequence[float],
          control_values: Sequence[float], *, relation: str = "greater", ci95: float | None = None,
          per_item: tuple[Sequence[Sequence[float]], Sequence[Sequence[float]]] | None = None,
          n: int | None = None, note: str | None = None, lower_is_better: bool = False) -> dict:
    """One positive-control entry from per-seed values of the treatment and the control.

    `treatment_values` / `control_values`: the metric per training seed (a control without seeds, such as a
    prior, gives one value, used for every seed). `per_item`: (treatment, control), each a list over seeds of the
    per-item values on the same items; it gives the 95% interval of the difference (`paired_ci95`) unless `ci95`
    is given. The spread is the sample sd over seeds of the per-seed difference. `lower_is_better`: the difference
    is control - treatment (module docstring)."""
    t = [float(v) for v in treatment_values]
    c = [float(v) for v in control_values]
    if not t or not c:
        raise ValueError(f"claim {claim!r}: no values for the treatment or the control")
    seeds = max(len(t), len(c))
    if len(c) == 1:
        c = c * seeds
    if len(t) == 1:
        t = t * seeds
    if len(t) != len(c):
        raise ValueError(f"claim {claim!r}: {len(t)} treatment seeds against {len(c)} control seeds")
    diffs = [(b - a) if lower_is_better else (a - b) for a, b in zip(t, c)]
    spread = statistics.stdev(diffs) if len(diffs) > 1 else None
    if ci95 is None and per_item is not None:
        ti, ci = per_item
        t_item = [_mean(col) for col in zip(*ti)]
        c_item = [_mean(col) for col in zip(*ci)]
        ci95 = paired_ci95(t_item, c_item)
        n = n if n is not None else len(t_item)
    difference = _mean(diffs)
    entry = {
        "claim": claim, "treatment": treatment, "control": control, "metric": metric, "relation": relation,
        "treatment_value": _mean(t), "control_value": _mean(c), "difference": difference,
        "spread": spread, "ci95": ci95, "n": n, "n_seeds": seeds,
        "holds": decide(relation, difference, spread, ci95),
    }
    if lower_is_better:
        entry["lower_is_better"] = True
    if note:
        entry["note"] = note
    return entry


def not_shown(claim: str, reason: str) -> dict:
    """An entry for a claim the run cannot test (a missing variant, a toy that cannot show it): never holds."""
    return {"claim": claim, "treatment": None, "control": None, "metric": None, "relation": None,
            "treatment_value": None, "control_value": None, "difference": None, "spread": None, "ci95": None,
            "n": None, "n_seeds": None, "holds": False, "note": reason}


def table_rows(section: str, controls: list[dict]) -> list[dict]:
    """Report rows for one stage's entries (numbers rounded for reading; metrics.json keeps them whole)."""
    r = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    rows = []
    for e in controls:
        rows.append({
            "stage": section, "claim": e["claim"], "metric": e.get("metric"),
            "treatment": r(e.get("treatment_value")), "control": r(e.get("control_value")),
            "difference": r(e.get("difference")),
            "seed spread": "one seed" if e.get("spread") is None and e.get("n_seeds") == 1 else r(e.get("spread")),
            "95% CI ±": r(e.get("ci95")), "holds": "yes" if e.get("holds") else "**no**",
            **({"note": e["note"]} if e.get("note") else {}),
        })
    return rows
