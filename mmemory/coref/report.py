"""The coref stage's tables and figure (built by `mmemory.coref.stage.build_table`, rule `coref_table`): every model
before and after fine-tuning under both protocols, the chance and shortcut baselines (and, on toy data, the rule
reader as an oracle) in the same table, position bias, training, the comparison with every baseline (fine-tuned beats it on object-level accuracy by more
than its interval), the shortcut baselines on every split, accuracy per dialogue kind and the positive controls
(`mmemory.controls`: each fine-tuned model against the strongest baseline, per kind against chance).

    tables = coref_tables(runs, train, test, train_metrics, val_dialogues=val, oracle=True)  # {caption: rows}

Cells are numbers, {"value", "lo", "hi", "n"}: the accuracy and its 95% Wilson interval over the n test items
(`evaluate.rate`); the report renders one as "0.812 [0.770, 0.849]" (`mmemory.report.format_estimate`). A row over
several training seeds adds "sd" and "seeds" ("0.812 ± 0.010 [0.770, 0.849]"): value is the mean over the seeds, sd
the sample standard deviation over the seeds, and the interval the Wilson interval of the mean accuracy at one seed's
item count. That interval is the test-set sampling error of a model of that accuracy; pooling the seeds' items would
narrow it falsely (the seeds score the same items), and the seed-to-seed spread is the sd beside it, judged
separately (`mmemory.seeds.verdict`).
"""
from __future__ import annotations

import statistics
from pathlib import Path

from mmemory.coref.evaluate import _dialogues, baseline_rows, rate
from mmemory.seeds import difference_spread, verdict

VARIANT_NAMES = {"before": "before", "finetuned": "fine-tuned"}
TRAINING_CAPTION = "Fine-tuning per model and training seed: the epoch kept is the one with the lowest val loss"


# ---------------------------------------------------------------- cells

def _get(result: dict, path: tuple[str, ...]) -> dict:
    v = result
    for k in path:
        v = v[k]
    return v


def seed_rate(rates: list[dict]) -> dict:
    """One accuracy over training seeds: {value (mean), sd (None with one seed), lo, hi, seeds, n}; the interval
    is the Wilson interval of the mean at one seed's n (the first seed's own interval with one seed)."""
    if len(rates) == 1:
        r = rates[0]
        return {"value": r["value"], "sd": None, "lo": r["lo"], "hi": r["hi"], "seeds": 1, "n": r["n"]}
    n = rates[0]["n"]
    ks = [r["k"] for r in rates]
    values = [r["value"] for r in rates]
    level_rate = rate(statistics.fmean(ks), n)
    return {"value": statistics.fmean(values), "sd": statistics.stdev(values), "lo": level_rate["lo"],
            "hi": level_rate["hi"], "seeds": len(rates), "n": n}


def rate_cell(r: dict | None) -> dict | None:
    """A table cell from a rate or a seed rate: {value, lo, hi, n}, plus sd and seeds over several training seeds;
    None (rendered "–") for none."""
    if r is None or r.get("value") is None:
        return None
    cell = {k: r[k] for k in ("value", "lo", "hi", "n")}
    if r.get("sd") is not None:
        cell.update(sd=r["sd"], seeds=r["seeds"])
    return cell


def _cell(results: list[dict], path: tuple[str, ...]) -> dict | None:
    return rate_cell(seed_rate([_get(r, path) for r in results]))


# ---------------------------------------------------------------- tables

MAIN_COLUMNS = {  # column -> where the rate lies in eval.json
    "object acc": ("generation", "object_acc"),
    "photo acc": ("generation", "photo_acc"),
    "exact match": ("generation", "exact_match"),
    "parse failures": ("generation", "parse_failure"),
    "acc (likelihood)": ("likelihood", "acc"),
    "acc_norm (likelihood)": ("likelihood", "acc_norm"),
}


def _model_rows(runs: dict[str, dict[str, list[dict]]]):
    for model, variants in runs.items():
        for variant in ("before", "finetuned"):
            if variants.get(variant):
                yield model, variant, variants[variant]


def main_table(runs: dict[str, dict[str, list[dict]]], baselines: list[dict]) -> list[dict]:
    """The seed's shape: one row per model x variant (generation: object, photo, exact match, parse failures;
    likelihood: acc, acc_norm), then the baselines (object and photo accuracy only)."""
    rows = []
    for model, variant, results in _model_rows(runs):
        row = {"model": model, "variant": VARIANT_NAMES[variant], "seeds": len(results)}
        row.update({col: _cell(results, path) for col, path in MAIN_COLUMNS.items()})
        rows.append(row)
    for b in baselines:
        row = {"model": b["baseline"], "variant": "baseline", "seeds": None,
               "object acc": rate_cell(b["object_acc"]), "photo acc": rate_cell(b["photo_acc"])}
        row.update({col: None for col in MAIN_COLUMNS if col not in row})
        rows.append(row)
    return rows


def position_bias_table(runs: dict[str, dict[str, list[dict]]]) -> list[dict]:
    """Per model x variant: accuracy in the original and the rotated order, and the share of answers (the chosen
    option's text) that change, under both protocols."""
    rows = []
    for model, variant, results in _model_rows(runs):
        rows.append({
            "model": model, "variant": VARIANT_NAMES[variant], "shift": results[0]["permuted"].get("shift"),
            "object acc": _cell(results, ("generation", "object_acc")),
            "object acc rotated": _cell(results, ("permuted", "generation", "object_acc")),
            "changed (generation)": _cell(results, ("permuted", "changed", "generation")),
            "acc": _cell(results, ("likelihood", "acc")),
            "acc rotated": _cell(results, ("permuted", "likelihood", "acc")),
            "changed (acc)": _cell(results, ("permuted", "changed", "acc")),
        })
    return rows


def _best_val_loss(t: dict) -> float | None:
    losses = [v["val_loss"] for v in t.get("val_loss_by_epoch") or [] if v.get("val_loss") is not None]
    return round(min(losses), 4) if losses else None


def training_table(train_metrics: dict[str, list[dict]]) -> list[dict]:
    """One row per model x training seed."""
    rows = []
    for model, seeds in train_metrics.items():
        for t in seeds:
            rows.append({"model": model, "seed": t.get("seed"), "train dialogues": t.get("n_train"),
                         "steps": t.get("steps"),
                         "train loss": round(t["train_loss"], 4) if t.get("train_loss") is not None else None,
                         "chosen epoch": t.get("chosen_epoch"), "best val loss": _best_val_loss(t),
                         "seconds": t.get("train_seconds"), "world size": t.get("world_size")})
    return rows


def beats_by_ci(finetuned: dict, other: dict) -> bool:
    """Whether the fine-tuned interval's lower bound lies above the other's upper bound (the intervals are apart)."""
    return finetuned["lo"] > other["hi"]


def comparison_table(runs: dict[str, dict[str, list[dict]]], baselines: list[dict]) -> list[dict]:
    """Fine-tuned object accuracy (generation) against each baseline and the model's own untuned row: the
    difference, whether the intervals are apart ("beats by more than its CI"), and the seed-spread verdict."""
    rows = []
    for model, variants in runs.items():
        results = variants.get("finetuned") or []
        if not results:
            continue
        ft = seed_rate([r["generation"]["object_acc"] for r in results])
        others = [(b["baseline"], seed_rate([b["object_acc"]])) for b in baselines if b.get("kind") != "oracle"]
        if variants.get("before"):
            others.append((f"{model} before fine-tuning", seed_rate([r["generation"]["object_acc"]
                                                                     for r in variants["before"]])))
        for name, other in others:
            delta = ft["value"] - other["value"]
            spread = difference_spread(ft["sd"], other["sd"])
            rows.append({"model": model, "baseline": name, "fine-tuned": round(ft["value"], 4),
                         "baseline acc": round(other["value"], 4), "difference": round(delta, 4),
                         "fine-tuned lo": round(ft["lo"], 4), "baseline hi": round(other["hi"], 4),
                         "beats by more than its CI": "yes" if beats_by_ci(ft, other) else "no",
                         "seed spread": None if spread is None else round(spread, 4),
                         "verdict": verdict(delta, spread), "seeds": ft["seeds"]})
    return rows


def _item_correct(result: dict, key: str = "parsed_label") -> list[float] | None:
    """Per test item, 1.0 when the prediction (`key` of eval.json's predictions) is the answer, else 0.0 (None when
    the file holds no per-item predictions)."""
    preds = result.get("predictions") or []
    if not preds or any("answer" not in p for p in preds):
        return None
    return [float(p.get(key) == p["answer"]) for p in preds]


def _baseline_items(b: dict, test) -> list[float]:
    if b.get("labels") is None:  # the expected random label: its exact per-item expectation
        return [b["object_acc"]["value"]] * len(test)
    return [float(lab == d.answer) for lab, d in zip(b["labels"], test)]


def _num(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def strongest_baseline(baselines: list[dict]) -> dict:
    """The baseline (chance or shortcut, never the oracle) with the highest object accuracy on test: the
    conservative control for every fine-tuned model (the comparison is harder than against one chosen on val)."""
    return max((b for b in baselines if b.get("kind") != "oracle"), key=lambda b: b["object_acc"]["value"])


def kind_table(runs: dict[str, dict[str, list[dict]]], baselines: list[dict], test, level: float = 0.95) -> list[dict]:
    """Object accuracy (generation) per dialogue kind (`mmemory.coref.toy.dialogue_kind`: praise, attribute) for
    every model variant and baseline: a cell {value, lo, hi, n}, the mean over training seeds (with its sd over
    several) and the Wilson interval of the mean at the kind's item count."""
    from mmemory.coref.toy import dialogue_kind

    kinds = [dialogue_kind(d) for d in test]
    rows = []

    def add(name: str, variant: str, per_seed: list[list[float]]):
        for kind in sorted(set(kinds)):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            vals = [statistics.fmean(s[i] for i in idx) for s in per_seed]
            r = seed_rate([rate(sum(s[i] for i in idx), len(idx), level) for s in per_seed])
            cell = {"value": _num(statistics.fmean(vals)), "lo": _num(r["lo"]), "hi": _num(r["hi"]), "n": len(idx)}
            if len(vals) > 1:
                cell.update(sd=_num(statistics.stdev(vals)), seeds=len(per_seed))
            rows.append({"model": name, "variant": variant, "kind": kind, "object acc": cell,
                         "seeds": len(per_seed)})

    for model, variant, results in _model_rows(runs):
        items = [_item_correct(r) for r in results]
        if all(x is not None for x in items):
            add(model, VARIANT_NAMES[variant], items)
    for b in baselines:
        add(b["baseline"], b.get("kind", "baseline"), [_baseline_items(b, test)])
    return rows


def shortcut_split_table(train, val, test, level: float = 0.95) -> list[dict]:
    """The surface-cue baselines on train, val and test (object accuracy; test a cell with its Wilson interval):
    on the toy data each should sit at chance on every split. The logistic regression is fitted on train (its
    train figure is in-sample) with C chosen on val."""
    from mmemory.coref.baselines import best_letter, first_mentioned, fit_shortcut_lr, most_mentioned
    from mmemory.coref.toy import most_recent_mention

    lr = fit_shortcut_lr(train, val)
    methods = {"first-mentioned object": lambda ds: [first_mentioned(d) for d in ds],
               "most-mentioned object": lambda ds: [most_mentioned(d) for d in ds],
               "most recently mentioned object": lambda ds: [most_recent_mention(d) for d in ds],
               f"shortcut logistic regression (C={lr.C:g}, chosen on val)": lr.predict,
               "best single letter of the split": lambda ds: [best_letter(ds)[0]] * len(ds)}
    rows = []
    for name, f in methods.items():
        row = {"baseline": name}
        for split, ds in (("train", train), ("val", val), ("test", test)):
            k = sum(lab == d.answer for lab, d in zip(f(ds), ds))
            row[split] = _num(k / len(ds))
            if split == "test":
                r = rate(k, len(ds), level)
                row[split] = {"value": row[split], "lo": _num(r["lo"]), "hi": _num(r["hi"]), "n": len(ds)}
        rows.append(row)
    return rows


def positive_controls(runs: dict[str, dict[str, list[dict]]], baselines: list[dict], test,
                      kinds: bool = False) -> list[dict]:
    """The stage's claims (`mmemory.controls`): each fine-tuned model beats the strongest baseline (shortcuts
    included) on object accuracy; on the toy data, each is above chance on each dialogue kind, the untuned model
    stays at chance (negative control, option likelihood) and the rule reader reads every test dialogue (ceiling)."""
    from mmemory.controls import claim, not_shown

    out = []
    metric = "object accuracy (generation, test)"
    best = strongest_baseline(baselines)
    best_items = _baseline_items(best, test)
    for model, variants in runs.items():
        results = variants.get("finetuned") or []
        if not results:
            out.append(not_shown(f"{model} fine-tuned beats the strongest baseline", "no fine-tuned run"))
            continue
        items = [_item_correct(r) for r in results]
        per_item = (items, [best_items]) if all(x is not None for x in items) else None
        out.append(claim(f"{model} fine-tuned beats the strongest baseline ({best['baseline']})",
                         f"{model} fine-tuned", best["baseline"], metric,
                         [r["generation"]["object_acc"]["value"] for r in results], [best["object_acc"]["value"]],
                         per_item=per_item, n=len(test)))
        if kinds and per_item is not None:
            from mmemory.coref.toy import dialogue_kind

            kind_of = [dialogue_kind(d) for d in test]
            for kind in sorted(set(kind_of)):
                idx = [i for i, k in enumerate(kind_of) if k == kind]
                t = [[s[i] for i in idx] for s in items]
                chance = [1 / len(test[i].choices) for i in idx]
                out.append(claim(f"{model} fine-tuned above chance on {kind} dialogues", f"{model} fine-tuned",
                                 "random label", f"object accuracy (generation, test, {kind} dialogues)",
                                 [statistics.fmean(s) for s in t], [statistics.fmean(chance)],
                                 per_item=(t, [chance]), n=len(idx)))
        before = variants.get("before") or []
        lik = [_item_correct(r, "lik_label") for r in before]
        if kinds and before and all(x is not None for x in lik):
            chance = [1 / len(d.choices) for d in test]
            out.append(claim(f"{model} before fine-tuning stays at chance (negative control)", f"{model} untuned",
                             "random label", "object accuracy (option likelihood acc, test)",
                             [r["likelihood"]["acc"]["value"] for r in before], [statistics.fmean(chance)],
                             relation="within", per_item=(lik, [chance]), n=len(test)))
    oracle = next((b for b in baselines if b.get("kind") == "oracle"), None)
    if oracle is not None:
        out.append(claim("the rule reader resolves every test dialogue (the toy's rule is exact)", oracle["baseline"],
                         "perfect score", metric, [oracle["object_acc"]["value"]], [1.0], relation="at_least",
                         ci95=0.0, n=len(test)))
    return out


def coref_tables(runs: dict[str, dict[str, list[dict]]], train_dialogues, test_dialogues,
                 train_metrics: dict[str, list[dict]], val_dialogues=None, oracle: bool = False,
                 baselines: list[dict] | None = None) -> dict[str, list[dict]]:
    """{caption: rows}: the main table (with the baselines), position bias, training, fine-tuned vs baselines, and
    (given val) the shortcut baselines on every split; (toy data, `oracle`) accuracy per dialogue kind."""
    if baselines is None:
        baselines = baseline_rows(train_dialogues, test_dialogues, val=val_dialogues, oracle=oracle)
    n = len(test_dialogues)
    n_seeds = max((len(v.get("finetuned") or []) for v in runs.values()), default=0)
    exp = baselines[0]["expected"]
    main = (f"Coreference on {n} test dialogues: generation (greedy, parsed; object, photo, exact match, parse "
            f"failures, an unparseable answer wrong) and option likelihood (acc, acc_norm, as lm-eval), each with "
            f"its 95% Wilson interval; fine-tuned: mean ± sd over {n_seeds} training seed(s), interval of the mean "
            f"at {n} items; baselines have object and photo accuracy only (random label: the expected value of a uniform "
            f"draw, {exp['object_acc']:.3f} object, {exp['photo_acc']:.3f} photo, exact)")
    tables = {
        main: main_table(runs, baselines),
        "Position bias: accuracy with every dialogue's options rotated, and the share of answers (the chosen "
        "option) that change": position_bias_table(runs),
        TRAINING_CAPTION: training_table(train_metrics),
        "Fine-tuned against every baseline on object-level accuracy (generation): beats by more than its CI when "
        "the fine-tuned interval's lower bound lies above the baseline's upper bound; a gain over the seed spread "
        "needs two or more training seeds": comparison_table(runs, baselines),
    }
    if val_dialogues:
        tables["Shortcut baselines on every split (object accuracy): surface cues only (where and by whom an object "
               "is mentioned, its letter, its photo's owner); the logistic regression is fitted on train, C chosen "
               "on val"] = shortcut_split_table(_dialogues(train_dialogues), _dialogues(val_dialogues),
                                                _dialogues(test_dialogues))
    if oracle:
        tables["Object accuracy (generation) per dialogue kind on test: praise (the object praised last, by the "
               "other speaker) and attribute (the one object with the named attribute); mean over training seeds, "
               "sd, and the Wilson interval of the mean at the kind's item count"] = kind_table(
                   runs, baselines, _dialogues(test_dialogues))
    return tables


# ---------------------------------------------------------------- figure

def plot_accuracy(runs: dict[str, dict[str, list[dict]]], baselines: list[dict], path: str | Path) -> None:
    """Object-level accuracy per model, before and fine-tuned, under generation (object acc) and likelihood (acc):
    bars with 95% intervals as error bars, the baselines as dashed labelled lines; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmemory.figures import save_figure

    panels = (("generation: object acc", ("generation", "object_acc")), ("option likelihood: acc",
                                                                          ("likelihood", "acc")))
    models = list(runs)
    fig, axes = plt.subplots(1, 2, figsize=(max(7, 2.2 * len(models) + 4), 4.8), sharey=True)
    width = 0.38
    lines = []
    for b in baselines:
        lines.append((b["object_acc"]["value"], b["baseline"]))
    for ax, (title, key) in zip(axes, panels):
        for j, (variant, colour) in enumerate((("before", "#9e9e9e"), ("finetuned", "#1f77b4"))):
            xs, ys, err = [], [], [[], []]
            for i, model in enumerate(models):
                results = runs[model].get(variant) or []
                if not results:
                    continue
                r = seed_rate([_get(res, key) for res in results])
                xs.append(i + (j - 0.5) * width)
                ys.append(r["value"])
                err[0].append(max(0.0, r["value"] - r["lo"]))
                err[1].append(max(0.0, r["hi"] - r["value"]))
            if xs:
                ax.bar(xs, ys, width, yerr=err, capsize=4, color=colour, label=VARIANT_NAMES[variant])
        for (value, label), colour in zip(lines, ("#d62728", "#ff7f0e", "#9467bd", "#2ca02c", "#8c564b", "#e377c2",
                                                  "#7f7f7f", "#17becf")):
            if value is not None:
                ax.axhline(value, ls="--", lw=1.2, color=colour, label=f"{label}: {value:.2f}")
        ax.set_xticks(range(len(models)), models)
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.set_ylim(0, 1.05)
        ax.set_title(title)
    axes[0].set_ylabel("accuracy on test (95% interval)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    save_figure(fig, path)
