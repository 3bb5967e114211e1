"""Counting metrics, the no-model baselines, the error-by-count buckets, the two figures and the report's rows.

    m = counting_metrics([3, 5, 7], [3, 6, None])
    # {"n": 3, "exact_accuracy": 0.333, "within_1": 0.667, "within_2": 0.667, "mae": 2.667, "rmse": 4.082,
    #  "precision_macro": ..., "f1_weighted": ..., "parse_failures": 1, "parse_failure_rate": 0.333, ...}

A parse failure (`None`: the answer stated no count) is never dropped:
- it is wrong for exact accuracy and within ±1 / ±2;
- for MAE and RMSE it is scored as **predicting 0 people** (`FAILURE_VALUE`), so its error is the true count: a
  model that says nothing is no better than one that says "nobody" (on Mall, 13-53 people, that is a large error);
- for precision, recall and F1 it is its own class, `-1` (`FAILURE_LABEL`), which no true count has;
- `parse_failure_rate` reports how often it happened.

Precision, recall and F1 are scikit-learn's `precision_recall_fscore_support` over count classes with
`zero_division=0`, macro and weighted (by each true class's support), over sklearn's default label set: every
count that occurs as a true or a predicted value (and -1 when there are failures). This is the seed's accuracy /
precision / recall / F1 computed on counts as class labels; MAE and RMSE are the crowd-counting standard.
"""
from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence

import numpy as np

FAILURE_VALUE = 0  # the count a parse failure is scored as in MAE / RMSE (see the module docstring)
FAILURE_LABEL = -1  # the class a parse failure is in precision / recall / F1

# (metrics key, table column) in the report's order
TABLE_COLUMNS = (
    ("exact_accuracy", "exact acc"),
    ("within_1", "acc ±1"),
    ("within_2", "acc ±2"),
    ("mae", "MAE"),
    ("rmse", "RMSE"),
    ("precision_macro", "P (macro)"),
    ("recall_macro", "R (macro)"),
    ("f1_macro", "F1 (macro)"),
    ("precision_weighted", "P (weighted)"),
    ("recall_weighted", "R (weighted)"),
    ("f1_weighted", "F1 (weighted)"),
    ("parse_failure_rate", "parse failures"),
)


def _check(y_true: Sequence, y_pred: Sequence) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"counting_metrics: {len(y_true)} true counts but {len(y_pred)} predictions; give one "
                         "prediction (or None for a parse failure) per test frame")
    if not len(y_true):
        raise ValueError("counting_metrics: no test frames")


def counting_metrics(y_true: Sequence[int], y_pred: Sequence[int | None]) -> dict:
    """Exact / ±1 / ±2 accuracy, MAE, RMSE, macro and weighted P/R/F1 and the parse-failure rate.
    `y_pred` may hold None (a parse failure); see the module docstring for how it is scored."""
    from sklearn.metrics import precision_recall_fscore_support

    _check(y_true, y_pred)
    true = np.asarray([int(t) for t in y_true])
    failed = np.asarray([p is None for p in y_pred])
    pred = np.asarray([FAILURE_VALUE if p is None else int(p) for p in y_pred])
    err = np.abs(pred - true)
    hit = lambda k: float(np.mean((err <= k) & ~failed))  # noqa: E731
    labels = np.where(failed, FAILURE_LABEL, pred)
    out = {"n": int(len(true)), "exact_accuracy": hit(0), "within_1": hit(1), "within_2": hit(2),
           "mae": float(err.mean()), "rmse": float(np.sqrt((err.astype(float) ** 2).mean()))}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(true, labels, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    out["parse_failures"] = int(failed.sum())
    out["parse_failure_rate"] = float(failed.mean())
    out["failure_rule"] = (f"a parse failure is wrong for exact/±1/±2, predicts {FAILURE_VALUE} in MAE/RMSE and is "
                           f"class {FAILURE_LABEL} in P/R/F1")
    return out


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def constant_baseline(train_counts: Sequence[int], test_counts: Sequence[int], statistic: str = "mean") -> dict:
    """Predict one number for every test frame: the train mean or median. Exact / ±k accuracy and P/R/F1 use it
    rounded half up to an integer (a count); MAE and RMSE use it unrounded (`constant`), the usual crowd-counting
    baseline. Keys: those of `counting_metrics`, plus `constant`, `constant_rounded` and `statistic`."""
    if statistic not in ("mean", "median"):
        raise ValueError(f"constant_baseline: statistic must be 'mean' or 'median', got {statistic!r}")
    if not len(train_counts):
        raise ValueError("constant_baseline: no train counts")
    value = float(statistics.fmean(train_counts) if statistic == "mean" else statistics.median(train_counts))
    rounded = _round_half_up(value)
    out = counting_metrics(test_counts, [rounded] * len(test_counts))
    err = np.abs(np.asarray(test_counts, dtype=float) - value)
    out.update({"mae": float(err.mean()), "rmse": float(np.sqrt((err ** 2).mean())), "constant": value,
                "constant_rounded": rounded, "statistic": statistic})
    out["failure_rule"] = "no parse failures (a constant); MAE/RMSE with the unrounded constant"
    return out


def bucket_errors(y_true: Sequence[int], y_pred: Sequence[int | None], edges: Sequence[int]) -> list[dict]:
    """Mean absolute error by true-count bucket: [edges[i], edges[i+1]) for each i, plus an open bucket
    `>= edges[-1]` (and `< edges[0]`) where frames fall there. A parse failure predicts `FAILURE_VALUE`.
    Rows: {bucket, lo, hi (exclusive; None when open), n, mae, parse_failures}; empty buckets are left out."""
    _check(y_true, y_pred)
    edges = [int(e) for e in edges]
    if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bucket_errors: edges must be a non-empty increasing list of counts, got {edges}")
    bounds = [(None, edges[0])] + list(zip(edges, edges[1:])) + [(edges[-1], None)]
    rows = []
    for lo, hi in bounds:
        sel = [(t, p) for t, p in zip(y_true, y_pred) if (lo is None or t >= lo) and (hi is None or t < hi)]
        if not sel:
            continue
        label = (f"< {hi}" if lo is None else f">= {lo}" if hi is None
                 else str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}")
        errs = [abs((FAILURE_VALUE if p is None else p) - t) for t, p in sel]
        rows.append({"bucket": label, "lo": lo, "hi": hi, "n": len(sel), "mae": float(np.mean(errs)),
                     "parse_failures": sum(p is None for _, p in sel)})
    return rows


# -------------------------------------------------------------------------------------------------- figures

def plot_scatter(rows: dict[str, Iterable[dict]], path, title: str = "Predicted against true count (test)") -> None:
    """Predicted against true count, one series per model variant (`rows`: variant -> prediction rows with
    `count_true` and `count_pred`), with the diagonal. Parse failures are drawn at `FAILURE_VALUE` as crosses and
    counted in the legend. A small fixed jitter keeps equal points apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmemory.figures import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 5))
    rng = np.random.default_rng(0)
    rows = {variant: list(rs) for variant, rs in rows.items()}
    true_max = max([r["count_true"] for rs in rows.values() for r in rs] or [1])
    top = max(2.0, 1.5 * true_max)  # predictions above it are drawn on the top edge (a model that says "96")
    for k, (variant, rs) in enumerate(rows.items()):
        t = np.asarray([r["count_true"] for r in rs], dtype=float)
        failed = np.asarray([r.get("count_pred") is None for r in rs], dtype=bool)
        p = np.asarray([FAILURE_VALUE if r.get("count_pred") is None else r["count_pred"] for r in rs], dtype=float)
        above = p > top
        p = np.minimum(p, top)
        jt, jp = rng.uniform(-0.15, 0.15, len(t)), rng.uniform(-0.15, 0.15, len(t))
        color = f"C{k}"
        notes = [f"{int(failed.sum())} unparsed, x" if failed.any() else "",
                 f"{int(above.sum())} above {top:g}, ^" if above.any() else ""]
        label = variant + "".join(f" ({n})" for n in notes if n)
        ok = ~failed & ~above
        ax.scatter(t[ok] + jt[ok], p[ok] + jp[ok], s=12, alpha=0.6, color=color, label=label)
        if failed.any():
            ax.scatter(t[failed] + jt[failed], p[failed] + jp[failed], s=18, marker="x", color=color)
        if above.any():
            ax.scatter(t[above] + jt[above], p[above], s=18, marker="^", color=color, clip_on=False)
    ax.plot([0, true_max], [0, true_max], color="k", lw=1, ls="--", label="perfect count")
    ax.set_xlim(-0.5, true_max + 0.5)
    ax.set_ylim(-0.5, top + 0.5)
    ax.set_xlabel("true count")
    ax.set_ylabel("predicted count")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_buckets(buckets: dict[str, list[dict]], path, title: str = "Absolute error by true count (test)") -> None:
    """Grouped bars: MAE per true-count bucket (`buckets`: method -> `bucket_errors` rows), one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmemory.figures import save_figure

    labels = list(dict.fromkeys(r["bucket"] for rs in buckets.values() for r in rs))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(labels) + 2), 4))
    width = 0.8 / max(1, len(buckets))
    x = np.arange(len(labels))
    values = {m: {r["bucket"]: r["mae"] for r in rs} for m, rs in buckets.items()}
    # the y axis fits every method but one far-off outlier (an untuned model's errors of 30+ would flatten the
    # rest): its bars are cut at the top and labelled with their value
    peaks = sorted((max(by.values(), default=0.0) for by in values.values()), reverse=True)
    cap = 1.4 * peaks[1] if len(peaks) > 1 and peaks[0] > 3 * peaks[1] > 0 else None
    for k, (method, by) in enumerate(values.items()):
        xs = x + (k - (len(buckets) - 1) / 2) * width
        ys = [by.get(b, 0.0) for b in labels]
        ax.bar(xs, [min(y, cap) if cap else y for y in ys], width, label=method)
        if cap:
            for xi, y in zip(xs, ys):
                if y > cap:
                    ax.text(xi, cap, f"{y:.0f}", ha="center", va="bottom", fontsize=7)
    if cap:
        ax.set_ylim(0, cap * 1.12)
    ax.set_xticks(x, labels)
    ax.set_xlabel("true count")
    ax.set_ylabel("mean absolute error")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


# ------------------------------------------------------------------------------------------------- the table

def _cell(values: list[float], digits: int = 4):
    """One value (rounded), or {"value": mean, "sd": sample sd, "seeds": k} over k seeds (the report renders it
    "mean ± sd")."""
    values = [float(v) for v in values]
    if len(values) == 1:
        return round(values[0], digits)
    return {"value": statistics.fmean(values), "sd": statistics.stdev(values), "seeds": len(values)}


def counting_table(methods: dict[str, dict | list[dict]]) -> list[dict]:
    """The report's rows, one per method, in the order given, e.g. {"fine-tuned": [metrics per seed],
    "untuned model": metrics, "train mean": constant_baseline(...), "train median": ...,
    "oracle head counter": ...}. A method with metrics from several seeds has {value: mean, sd: sample sd,
    seeds} in each cell (rendered "mean ± sd") and its number of seeds; one run has the number. Columns:
    `TABLE_COLUMNS`, then n and seeds."""
    rows = []
    for method, ms in methods.items():
        ms = [ms] if isinstance(ms, dict) else list(ms)
        if not ms:
            raise ValueError(f"counting_table: no metrics for {method!r}")
        ns = {m["n"] for m in ms}
        if len(ns) != 1:
            raise ValueError(f"counting_table: the runs of {method!r} score different numbers of frames {sorted(ns)}")
        row = {"method": method}
        row.update({label: _cell([m[key] for m in ms]) for key, label in TABLE_COLUMNS})
        row["n"] = ns.pop()
        row["seeds"] = len(ms)
        rows.append(row)
    return rows
