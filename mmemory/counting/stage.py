"""The counting stage's steps (the workflow scripts call these): the data (rule `counting_data`), fine-tuning
(`finetune_counting`), prediction (`predict_counting`), the toy model (`build_counting_toy_model`) and the table
(`counting_table`): every method on the test frames, in one table.

    prepare_counting_data(cfg, out_dir, toy_root)   # {train,val,test}.json + data_report.json
    build_table(runs, "train.json", "test.json", ["train_metrics.json"], "data_report.json", classical=True,
                tensorboard=["finetuned/s0/tensorboard"], out_json="metrics.json", out_scatter=..., out_buckets=...)

`runs` maps each model variant to its predictions files (`before`: the untuned model, one file; `finetuned`: one per
training seed). Rows: the fine-tuned model (mean ± sd over the training seeds), the untuned model, the train mean
and median (constant baselines), a palette-free classical counter (blob detection with a straight line from blobs
to people, `mmemory.counting.classical`: fitted on train, its settings chosen on val, knowing nothing of the
generator) and, on the toy frames, the oracle head counter (connected components of the generator's own head
colours, `mmemory.counting.toy.count_heads_classical`): an oracle reference, not a baseline. The
two headline comparisons (fine-tuned against the train mean on MAE and against the untuned model on exact
accuracy) are a table of their own, a gain only when larger than the seed-to-seed spread.
"""
from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

from mmemory.counting.bad_input import FIXES, CountingDataError
from mmemory.counting.data import SPLITS, CountingDataConfig, check_split_sizes, load_split, read_source, split_items
from mmemory.counting.metrics import (FAILURE_VALUE, bucket_errors, constant_baseline, counting_metrics,
                                      counting_table, plot_buckets, plot_scatter)
from mmemory.io import atomic_write_json, read_json_file
from mmemory.seeds import difference_spread, verdict

logger = logging.getLogger(__name__)

VARIANT_NAMES = {"finetuned": "fine-tuned VLM", "before": "untuned VLM"}
BUCKET_EDGES = (0, 4, 8, 12)  # error-by-count buckets: 0-3, 4-7, 8-11, >= 12 (Mall's 13-53 all fall in the last)


# ---------------------------------------------------------------- the data

def prepare_counting_data(cfg: CountingDataConfig | dict, out_dir: str | Path, toy_root: str | Path | None = None,
                          report_path: str | Path | None = None) -> dict:
    """Read the source, split it and write `out_dir/{train,val,test}.json` (lists of {id, count, image}) and the
    report (`report_path`, default `out_dir/data_report.json`), each atomically. Returns the report."""
    if isinstance(cfg, dict):
        cfg = CountingDataConfig.from_dict(cfg)
    items, report = read_source(cfg, toy_root)
    if not items:  # the report is not written (the rule failed), so the message carries its examples
        examples = "; ".join(f"{r}: {n} (e.g. {', '.join(map(str, report.examples.get(r, [])[:2]))})"
                             for r, n in report.to_json()["skipped"].items())
        raise CountingDataError(f"{report.path}: no usable frames ({report.read} read; skipped: "
                                f"{examples or 'none'}). Fix: " + "; ".join(FIXES[r] for r in report.skipped))
    stats: dict = {}
    splits = split_items(items, cfg, stats)
    check_split_sizes({k: len(v) for k, v in splits.items()}, len(items), report.path, cfg)
    report.extra["split"] = stats
    out_dir = Path(out_dir)
    for name in SPLITS:
        atomic_write_json(out_dir / f"{name}.json", splits[name], indent=1)
    out = report.to_json()
    atomic_write_json(report_path or out_dir / "data_report.json", out, indent=2)
    logger.info("counting data (%s): train %d, val %d, test %d", cfg.source, *(len(splits[s]) for s in SPLITS))
    return out



def build_toy_model(out_dir: str, sizes: dict, seed: int, metrics_path: str) -> dict:
    """The tiny LLaVA of config counting.toy_model, saved under `out_dir`; its parameter counts go to metrics_path."""
    from mmemory.counting.model import CountingToySize, build_tiny_llava

    stats = build_tiny_llava(out_dir, CountingToySize.from_dict(sizes), seed=seed)
    atomic_write_json(metrics_path, stats, indent=2)
    return stats


# ---------------------------------------------------------------- fine-tuning and prediction

def run_finetune(model: str, train_json: str, val_json: str, adapter_dir: str, checkpoint_dir: str,
                 tensorboard_dir: str, train: dict, metrics_path: str) -> dict:
    """LoRA fine-tuning on the train split, the epoch kept by val loss (config counting.train, the seed set)."""
    from mmemory.counting.train import CountingTrainConfig, finetune_counting

    return finetune_counting(model, load_split(train_json), load_split(val_json), adapter_dir, checkpoint_dir,
                             tensorboard_dir, CountingTrainConfig.from_dict(train), metrics_path)


def run_predict(model: str, adapter: str | None, split_json: str, generation: dict, out_path: str) -> list[dict]:
    """Greedy answers for every frame of one split, with the adapter or without (the untuned model)."""
    from mmemory.counting.predict import CountingGenerationConfig, predict_counts

    return predict_counts(model, adapter, load_split(split_json), CountingGenerationConfig.from_dict(generation),
                          out_path)


# ---------------------------------------------------------------- the table

def _predictions(path: str | Path, test: list[dict]) -> list[dict]:
    """One predictions file, checked against the test split (same frames, same order, same true counts)."""
    rows = read_json_file(path)
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
    """Fine-tuned against the train mean (MAE) and against the untuned model (exact accuracy), each with its seed
    spread and verdict."""
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


ORACLE = "oracle head counter (knows the toy's head colours)"
BLOBS = "classical blob counter (palette-free, settings chosen on val)"
TRAINING_CAPTION = "Fine-tuning (per training seed): the epoch kept is the one with the lowest val loss"


def _abs_errors(truth: list[int], preds: list[int | None]) -> list[float]:
    """Per-frame absolute error as `counting_metrics` scores it (a parse failure predicts FAILURE_VALUE)."""
    return [float(abs((FAILURE_VALUE if p is None else p) - t)) for t, p in zip(truth, preds)]


def positive_controls(truth: list[int], finetuned: list[list[dict]], mean_b: dict, blobs: list[int] | None,
                      oracle: list[int] | None) -> list[dict]:
    """The stage's claims (`mmemory.controls`) on MAE, lower is better: each entry's treatment is the method the claim
    is about, and `difference` is the control's MAE minus the treatment's (`lower_is_better`), the MAE the treatment
    saves; a `greater` claim holds when that exceeds both the seed spread and its paired 95% interval over test frames.
    - the fine-tuned VLM beats the train mean;
    - the fine-tuned VLM beats the palette-free classical counter (stated whichever way it comes out);
    - the oracle head counter bounds it (relation at_least: the oracle errs no more than the VLM)."""
    from mmemory.controls import claim, not_shown

    if not finetuned:
        return [not_shown("fine-tuned VLM beats the train mean (MAE)", "no fine-tuned run")]
    ft_items = [_abs_errors(truth, [r.get("count_pred") for r in rows]) for rows in finetuned]
    ft_mae = [statistics.fmean(e) for e in ft_items]
    metric = "MAE on test (lower is better; difference = control MAE - treatment MAE)"
    out = []
    mean_items = [abs(mean_b["constant"] - t) for t in truth]
    out.append(claim("fine-tuned VLM has a lower MAE than the train mean", "fine-tuned VLM", "train mean", metric,
                     ft_mae, [mean_b["mae"]], per_item=(ft_items, [mean_items]), n=len(truth), lower_is_better=True))
    if blobs is not None:
        b_items = _abs_errors(truth, blobs)
        out.append(claim("fine-tuned VLM has a lower MAE than the palette-free classical counter", "fine-tuned VLM",
                         BLOBS, metric, ft_mae, [statistics.fmean(b_items)], per_item=(ft_items, [b_items]),
                         n=len(truth), lower_is_better=True))
    if oracle is not None:
        o_items = _abs_errors(truth, oracle)
        out.append(claim("the oracle head counter errs no more than the fine-tuned VLM (a ceiling)", ORACLE,
                         "fine-tuned VLM", metric, [statistics.fmean(o_items)], ft_mae, relation="at_least",
                         per_item=([o_items], ft_items), n=len(truth), lower_is_better=True))
    return out


def build_table(runs: dict[str, list[str]], train_json: str, test_json: str, train_metrics: list[str],
                data_report: str, classical: bool, tensorboard: list[str], out_json: str, out_scatter: str,
                out_buckets: str, val_json: str | None = None) -> dict:
    """Score every method on test and write metrics.json and the figures. `classical` (toy frames) adds the oracle
    head counter; `val_json` adds the palette-free blob counter (its line fitted on train, its settings chosen on
    val)."""
    train, test = load_split(train_json), load_split(test_json)
    val = load_split(val_json) if val_json else None
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
    blobs = heads = counter = None
    if val:
        from mmemory.counting.classical import fit_blob_counter

        counter = fit_blob_counter(train, val)
        blobs = counter.predict(test)
        methods[BLOBS] = counting_metrics(truth, blobs)
        buckets[BLOBS] = bucket_errors(truth, blobs, BUCKET_EDGES)
    if classical:
        from mmemory.counting.toy import count_heads_classical

        heads = [count_heads_classical(t["image"]) for t in test]
        methods[ORACLE] = counting_metrics(truth, heads)
        buckets[ORACLE] = bucket_errors(truth, heads, BUCKET_EDGES)
    n_seeds = len(scored.get("finetuned", []))
    report = read_json_file(data_report)
    trains = [read_json_file(p) for p in train_metrics]
    caption = (f"People counting on {len(test)} test frames ({report.get('source')}; train {len(train)}): "
               f"exact / ±1 / ±2 accuracy, MAE and RMSE, the seed's precision / recall / F1 over count classes "
               f"(scikit-learn, macro and weighted); a parse failure is wrong and scores as 0 people in MAE; "
               f"fine-tuned: mean ± sd over {n_seeds} training seed(s)")
    tables = {caption: counting_table(methods)}
    if "finetuned" in scored and "before" in scored:
        tables["Fine-tuned against the baselines on test (a gain only when larger than the seed spread)"] = \
            comparisons(scored["finetuned"], scored["before"][0], mean_b)
    tables[TRAINING_CAPTION] = [
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
        "splits": {TRAINING_CAPTION: "train"},
        "headline_controls": {"fine-tuned exact acc": [{"control": "train mean", "value": mean_b["exact_accuracy"]}],
                              "fine-tuned acc ±2": [{"control": "train mean", "value": mean_b["within_2"]}]},
        "tensorboard": f"tensorboard --logdir {Path(tensorboard[0]).parent.parent}" if tensorboard else None,
        "tensorboard_dirs": list(tensorboard),
        "data": {k: report.get(k) for k in ("source", "read", "kept", "skipped")},
        "train_seeds": n_seeds,
        "classical_counter": counter.settings() if counter else None,
        "positive_controls": positive_controls(truth, preds.get("finetuned", []), mean_b, blobs, heads),
    }
    scatter = {VARIANT_NAMES.get(v, v): ps[0] for v, ps in preds.items()}
    if blobs is not None:
        scatter[BLOBS] = [{"count_true": t, "count_pred": h} for t, h in zip(truth, blobs)]
    if classical:
        scatter[ORACLE] = [{"count_true": t, "count_pred": h} for t, h in zip(truth, heads)]
    plot_scatter(scatter, out_scatter)
    plot_buckets(buckets, out_buckets)
    atomic_write_json(out_json, out, indent=2)
    logger.info("counting table: %s", json.dumps(tables[caption]))
    return out
