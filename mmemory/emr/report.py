"""`emr_metrics`: the EMR stage's metrics.json (variants table, toy-encoder retrieval, extraction) and loss curves.

The variants table carries two BLEUs, each named for what it is and both on a 0-100 scale: the seeds' nltk corpus
BLEU-4 (`BLEU4_COLUMN`, metrics key `bleu4_nltk`) and sacreBLEU (`SACREBLEU_COLUMN`, key `sacrebleu`), the BLEU the
`<reminder>` stage reports, so the two stages can be compared.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from mmemory.emr.lm import EmrConfig
from mmemory.io import atomic_write_json

logger = logging.getLogger(__name__)

BLEU4_COLUMN = "BLEU-4 (nltk, seeds', 0-100)"
SACREBLEU_COLUMN = "sacreBLEU (0-100)"
BLEU_NOTES = {
    "bleu4_nltk": "BLEU-4 (nltk, seeds', 0-100): nltk corpus_bleu on lower-cased whitespace tokens, x100, unsmoothed "
                  "(the EMR seeds' BLEU-4; a one-word answer's missing 2-4-grams count as 0 of 1)",
    "sacrebleu": "sacreBLEU (0-100): sacrebleu corpus_bleu with its defaults (13a tokens, exp smoothing), the BLEU "
                 "of the <reminder> stage",
}

LABELS = {
    "question_prior": "question alone (no image)",
    "before": "before fine-tuning",
    "after": "after",
    "no_turn_pe": "after, without turn_pe",
    "no_memory_bank": "after, without memory bank",
}


def _round(x, digits):
    return None if x is None else round(x, digits)


# What each difference between two rows isolates (the EMR differences table).
COMPARISONS = [
    ("after", "before", "training the bridge"),
    ("after", "question_prior", "looking at the image (vs the question alone)"),
    ("after", "no_turn_pe", "turn_pe"),
    ("after", "no_memory_bank", "the memory bank"),
]
DIFF_METRICS = [(("bleu4_nltk",), "BLEU-4 (nltk, 0-100)"), (("sacrebleu",), "sacreBLEU (0-100)"),
                (("exact_match",), "exact match"), (("mrr",), "MRR"), (("ndcg",), "NDCG")]


def emr_metrics(evals: dict[str, list[str]], losses: list[str], summaries: list[str], extraction: list[str],
                toy: list[str], out_json, out_png, bridge: dict, llm_trainable: bool = EmrConfig.llm_trainable,
                prior: dict | None = None, split: str = "test") -> dict:
    """`evals`: each variant's eval files, one per training seed; a row is their mean, with the seed-to-seed spread
    and the differences between rows in tables of their own. `prior`: the question-alone baseline
    (mmemory.emr.evaluate.question_prior), a row and a column of its own."""
    from mmemory.emr.bridge import BridgeConfig
    from mmemory.seeds import differences_table, mean_over_seeds, seed_note, std_over_seeds

    trainable = " + ".join(list(BridgeConfig.from_dict(bridge).trainable) + (["LM"] if llm_trainable else []))
    trained = {"before": "none", "question_prior": "nothing: the most frequent train answer to the question",
               "no_turn_pe": trainable.replace("turn_pe", "(no turn_pe)")}
    rows, headline, headline_controls, splits = [], {}, {}, {}  # splits: tables and headlines not on test
    per_seed = {v: [json.loads(Path(p).read_text()) for p in paths] for v, paths in evals.items()}
    if prior:
        per_seed = {"question_prior": [prior], **per_seed}
    means = {v: mean_over_seeds(ms) for v, ms in per_seed.items()}
    stds = {v: {path: std_over_seeds(ms, path) for path, _ in DIFF_METRICS} for v, ms in per_seed.items()}
    n_seeds = max(len(ms) for ms in per_seed.values())
    loaded = list(means.values())
    for m in loaded:
        v = m["variant"]
        rows.append({
            "variant": LABELS.get(v, v),
            "trained": trained.get(v, trainable),
            BLEU4_COLUMN: round(m["bleu4_nltk"], 2), SACREBLEU_COLUMN: _round(m.get("sacrebleu"), 2),
            "ROUGE-L": round(m["rougeL"], 4),
            "exact match": round(m["exact_match"], 4), "MRR": _round(m.get("mrr"), 4),
            "R@1": m.get("r@1"), "R@5": m.get("r@5"), "R@10": m.get("r@10"),
            "mean rank": _round(m.get("mean_rank"), 2), "NDCG": _round(m.get("ndcg"), 4),
            "rounds generated": m["n_generated_rounds"], "rounds ranked": m.get("n_ranked_rounds", 0),
            "soft prompt rel. std": _round(m.get("soft_prompt_relative_std"), 4),
            "seeds": len(per_seed[v]),
        })
        if v in ("before", "after"):
            headline[f"EMR BLEU-4 (nltk) {v}"] = round(m["bleu4_nltk"], 2)
            headline[f"EMR sacreBLEU {v}"] = _round(m.get("sacrebleu"), 2)
            headline[f"EMR MRR {v}"] = _round(m.get("mrr"), 4)
    if "question_prior" in means and "after" in means:
        qp = [{"control": LABELS["question_prior"], "value": round(means["question_prior"]["bleu4_nltk"], 2)}]
        headline_controls["EMR BLEU-4 (nltk) after"] = qp
        if means["question_prior"].get("sacrebleu") is not None:
            headline_controls["EMR sacreBLEU after"] = [
                {"control": LABELS["question_prior"], "value": _round(means["question_prior"]["sacrebleu"], 2)}]
    tables = {f"EMR on VisDial {split}: generation (beam search) and option ranking (LM log-likelihood); "
              f"{seed_note(n_seeds)}": rows}
    if n_seeds > 1:
        tables["Seed-to-seed spread of the EMR rows (sample std over train_seeds)"] = [
            {"variant": LABELS.get(v, v), **{label: None if stds[v][path] is None else round(stds[v][path], 4)
                                             for path, label in DIFF_METRICS}, "seeds": len(per_seed[v])}
            for v in per_seed if len(per_seed[v]) > 1]
    diffs = differences_table(means, stds, COMPARISONS, DIFF_METRICS)
    if diffs:
        tables[f"Differences between EMR rows on {split} (a gain only when larger than its seed spread)"] = diffs
    by_type: dict[str, dict] = {}
    for m in loaded:
        for t, acc in m.get("exact_match_by_question_type", {}).items():
            by_type.setdefault(t, {"question type": t})[LABELS.get(m["variant"], m["variant"])] = acc
    if by_type:
        tables["Exact match by question type (first two words of the question)"] = list(by_type.values())
    ranked = [ms[0].get("ranking_subset") for v, ms in per_seed.items() if v != "question_prior"]
    toy_rows = []
    for p in toy:
        m = json.loads(Path(p).read_text())
        if "val_r@1" in m:
            toy_rows.append({"model": "toy CLIP (contrastive)", "val image->caption R@1": round(m["val_r@1"], 4),
                             "untrained R@1": round(m["val_r@1_untrained"], 4), "chance": round(m["val_chance"], 4),
                             "val images": m["val_images"], "steps": m["steps"], "seconds": m["seconds"]})
            headline["toy CLIP R@1"] = round(m["val_r@1"], 4)
            splits["toy CLIP R@1"] = "val"
            headline_controls["toy CLIP R@1"] = [{"control": "chance", "value": round(m["val_chance"], 4)},
                                                 {"control": "untrained", "value": round(m["val_r@1_untrained"], 4)}]
        else:
            toy_rows.append({"model": "toy LM (pre-trained on train text)", "val loss": round(m["val_loss"], 4),
                             "steps": m["steps"], "seconds": m["seconds"]})
    if toy_rows:
        tables["Toy stand-ins trained by the workflow"] = toy_rows
        splits["Toy stand-ins trained by the workflow"] = "val"
    ext_rows = []
    for p in extraction:
        m = json.loads(Path(p).read_text())
        ext_rows.append({"split": Path(p).parent.name, "images": m["n_images"], "questions": m["n_questions"],
                         "items stored": m["n_items"], "quarantined": m["n_quarantined"], "shards": m["n_shards"],
                         "dim": m["dim"], "encoder": m["encoder"]})
    tables["Embedding extraction (safetensors shards)"] = ext_rows
    train_rows = []
    for p in summaries:
        s = json.loads(Path(p).read_text())
        train_rows.append({"seed": Path(p).parent.name, **{k: s.get(k) for k in ("variant", "caption_steps", "first_caption_loss",
                                                 "final_caption_loss", "steps", "train_dialogues", "first_val_loss",
                                                 "final_val_loss", "final_train_loss", "dialogues_per_s")}})
    if train_rows:
        tables["EMR training"] = train_rows
        splits["EMR training"] = "train"
    metrics = {"tables": tables, "headline": headline, "headline_controls": headline_controls, "splits": splits,
               "train_seeds": n_seeds,
               "positive_controls": emr_controls(per_seed),
               "ranking_subset": ranked[0] if ranked else None,
               "bleu": BLEU_NOTES}
    atomic_write_json(out_json, metrics, indent=2)
    plot_curves(losses, out_png)
    return metrics


def emr_controls(per_seed: dict[str, list[dict]]) -> list[dict]:
    """The EMR claims (mmemory.controls): the trained bridge beats the question prior on exact match. The interval is
    the unpaired normal interval of a difference of two proportions over the generated rounds (the eval files keep
    no per-round predictions; unpaired is the wider one). turn_pe and the memory bank: the toy cannot show them, and
    the default does not run their ablations; both are listed as not shown either way."""
    import math

    from mmemory.controls import claim, not_shown

    out = []
    if "after" in per_seed and "question_prior" in per_seed:
        t = [m["exact_match"] for m in per_seed["after"]]
        c = [per_seed["question_prior"][0]["exact_match"]]
        n = per_seed["after"][0]["n_generated_rounds"]
        pt, pc = sum(t) / len(t), c[0]
        ci = 1.959963984540054 * math.sqrt(pt * (1 - pt) / n + pc * (1 - pc) / n)
        out.append(claim("EMR: the trained bridge beats the question prior (it reads the image)", "after",
                         "question prior", "exact match (all rounds)", t, c, ci95=ci, n=n))
    reason = ("the toy cannot show it: no toy question needs turn order or the earlier rounds of its own dialogue "
              "that the memory bank keeps (an earlier-picture question needs another dialogue, which the bridge "
              "never sees; docs/emr.md)")
    for variant, what in (("no_turn_pe", "turn_pe"), ("no_memory_bank", "the memory bank")):
        if variant in per_seed:
            out.append(not_shown(f"EMR: {what} helps", reason))
        else:
            out.append(not_shown(f"EMR: {what} helps", f"not run: add {variant} to emr.variants (config/paper.yaml "
                                                       f"has it); on the toy, {reason}"))
    return out


def plot_curves(losses: list[str], png) -> None:
    """One panel per trained variant (results/emr/<variant>/s<seed>/loss.csv): caption pre-training, then answers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmemory.figures import save_figure

    fig, axes = plt.subplots(1, max(1, len(losses)), figsize=(4 * max(1, len(losses)), 3.4), sharey=True,
                             squeeze=False)
    for ax, path in zip(axes[0], losses):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        v, seed = Path(path).parent.parent.name, Path(path).parent.name
        for i, (split, style, label) in enumerate((("caption", ":", "caption pre-training"),
                                                   ("train", "-", "train (answer)"), ("val", "o--", "val (answer)"))):
            pts = [(int(r["step"]), float(r["loss"])) for r in rows if r["split"] == split]
            if pts:
                ax.plot(*zip(*pts), style, color=f"C{i}", alpha=1.0 if split == "val" else 0.6, markersize=3,
                        label=label)
        ax.set_title(f"{LABELS.get(v, v)} ({seed})", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("cross-entropy")
    fig.tight_layout()
    save_figure(fig, png)
