"""The counting stage's table (rule `counting_table`): every method on the test frames, in one table.

    build_table(runs, "train.json", "test.json", ["train_metrics.json"], "data_report.json", classical=True,
                tensorboard=["finetuned/s0/tensorboard"], out_json="metrics.json", out_scatter=..., out_buckets=...)

`runs` maps each model variant to its predictions files (`before`: the untuned model, one file; `finetuned`: one per
training seed). Rows: the fine-tuned model (mean ± sd over the training seeds), the untuned model, the train mean
and median (constant baselines) and, on the toy frames, the classical head counter (connected components of
head-coloured pixels, `mmemory.counting.toy.count_heads_classical`): a reference for what the pixels allow. The
comparisons the issue asks for (fine-tuned against the train mean on MAE and against the untuned model on exact
accuracy) are a table of their own, a gain only when larger than the seed-to-seed spread.
"""
from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

from mmemory.counting.data import load_split
from mmemory.counting.metrics import (bucket_errors, constant_baseline, counting_metrics, counting_table,
                                      plot_buckets, plot_scatter)
from mmemory.io import atomic_write_json
from mmemory.seeds import difference_spread, verdict

logger = logging.getLogger(__name__)

VARIANT_NAMES = {"finetuned": "fine-tuned VLM", "before": "untuned VLM"}
BUCKET_EDGES = (0, 4, 8, 12)  # error-by-count buckets: 0-3, 4-7, 8-11, >= 12 (Mall's 13-53 all fall in the last)


def _read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _predictions(path: str | Path, test: list[dict]) -> list[dict]:
    """One predictions file, checked against the test split (same frames, same order, same true counts)."""
    rows = _read_json(path)
    if [str(r["id"]) for r in rows] != [str(t["id"]) for t in test] or any(
            r["count_true"] != t["count"] for r, t in zip(rows, test)):
        raise ValueError(f"{path}: its frames are not the test split's; rerun predict_counting "
                         "(snakemake --forcerun predict_counting)")
    return rows


def _score(rows: list[dict]) -> dict:
    return counting_metrics([r["count_true"] for r in rows], [r.get("count_pred") for r in rows])


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def comparisons(finetuned: list[dict], untuned: dict, mean_baseline: dict) -> list[dict]:
    """The two comparisons of the issue's "done when", each with its seed spread and verdict."""
    rows = []
    for name, other, key, better in (("fine-tuned vs train mean", mean_baseline, "mae", "lower"),
                                     ("fine-tuned vs untuned", untuned, "exact_accuracy", "higher")):
        values = [m[key] for m in finetuned]
        delta = statistics.fmean(values) - other[key]
        spread = difference_spread(_std(values), None)
        rows.append({"comparison": name, "metric": key, "better": better, "fine-tuned": round(statistics.fmean(values), 4),
                     "other": round(other[key], 4), "difference": round(delta, 4),
                     "spread": None if spread is None else round(spread, 4),
                     "verdict": verdict(delta if better == "higher" else -delta, spread),
                     "seeds": len(values)})
    return rows


def build_table(runs: dict[str, list[str]], train_json: str, test_json: str, train_metrics: list[str],
                data_report: str, classical: bool, tensorboard: list[str], out_json: str, out_scatter: str,
                out_buckets: str) -> dict:
    train, test = load_split(train_json), load_split(test_json)
    truth = [t["count"] for t in test]
    preds = {v: [_predictions(p, test) for p in paths] for v, paths in runs.items()}
    scored = {v: [_score(rows) for rows in ps] for v, ps in preds.items()}
    train_counts = [t["count"] for t in train]
    mean_b = constant_baseline(train_counts, truth, "mean")
    median_b = constant_baseline(train_counts, truth, "median")
    methods = {VARIANT_NAMES.get(v, v): ms for v, ms in scored.items()}
    methods.update({"train mean": mean_b, "train median": median_b})
    buckets = {VARIANT_NAMES.get(v, v): bucket_errors(truth, [r.get("count_pred") for r in ps[0]], BUCKET_EDGES)
               for v, ps in preds.items()}
    buckets["train mean"] = bucket_errors(truth, [mean_b["constant_rounded"]] * len(truth), BUCKET_EDGES)
    if classical:
        from mmemory.counting.toy import count_heads_classical

        heads = [count_heads_classical(t["image"]) for t in test]
        methods["classical head counter"] = counting_metrics(truth, heads)
        buckets["classical head counter"] = bucket_errors(truth, heads, BUCKET_EDGES)
    n_seeds = len(scored.get("finetuned", []))
    report = _read_json(data_report)
    trains = [_read_json(p) for p in train_metrics]
    caption = (f"People counting on {len(test)} test frames ({report.get('source')}; train {len(train)}): "
               f"exact / ±1 / ±2 accuracy, MAE and RMSE, the seed's precision / recall / F1 over count classes "
               f"(scikit-learn, macro and weighted); a parse failure is wrong and scores as 0 people in MAE; "
               f"fine-tuned: mean ± sd over {n_seeds} training seed(s)")
    tables = {caption: counting_table(methods)}
    if "finetuned" in scored and "before" in scored:
        tables["Fine-tuned against the baselines on test (a gain only when larger than the seed spread)"] = \
            comparisons(scored["finetuned"], scored["before"][0], mean_b)
    tables["Fine-tuning (per training seed): the epoch kept is the one with the lowest val loss"] = [
        {"seed": i, "train frames": t.get("train_frames"), "val frames": t.get("val_frames"), "steps": t.get("steps"),
         "train loss": round(t["train_loss"], 4) if t.get("train_loss") is not None else None,
         "chosen epoch": t.get("chosen_epoch"),
         "best val loss": round(min(v["val_loss"] for v in t["val_loss_by_epoch"]), 4)
         if t.get("val_loss_by_epoch") else None,
         "seconds": t.get("train_seconds"), "4-bit": t.get("load_in_4bit")} for i, t in enumerate(trains)]
    finetuned = scored.get("finetuned", [{}])
    out = {
        "tables": tables,
        "headline": {"fine-tuned exact acc": statistics.fmean(m["exact_accuracy"] for m in finetuned),
                     "fine-tuned acc ±2": statistics.fmean(m["within_2"] for m in finetuned)},
        "tensorboard": f"tensorboard --logdir {Path(tensorboard[0]).parent.parent}" if tensorboard else None,
        "tensorboard_dirs": list(tensorboard),
        "data": {k: report.get(k) for k in ("source", "read", "kept", "skipped")},
        "train_seeds": n_seeds,
    }
    scatter = {VARIANT_NAMES.get(v, v): ps[0] for v, ps in preds.items()}
    if classical:
        scatter["classical head counter"] = [{"count_true": t, "count_pred": h} for t, h in zip(truth, heads)]
    plot_scatter(scatter, out_scatter)
    plot_buckets(buckets, out_buckets)
    atomic_write_json(out_json, out, indent=2)
    logger.info("counting table: %s", json.dumps(tables[caption]))
    return out
