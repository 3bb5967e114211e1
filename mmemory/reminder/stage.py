"""The reminder stage's steps as functions of config sections and paths (the workflow scripts call these).

Each returns the dict written to the step's metrics file; all outputs are written atomically.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict
from pathlib import Path

from mmemory.figures import save_figure
from mmemory.fingerprint import Fingerprint, file_digests, files_digest, model_digest, obj_digest
from mmemory.io import atomic_write_json, read_jsonl
from mmemory.reminder.evaluate import EvaluationConfig, evaluate_predictions, load_predictions
from mmemory.reminder.finetune import TRAINING_META
from mmemory.reminder.generate import generate_reminder_data
from mmemory.reminder.predict import GenerationConfig, predict_reminder
from mmemory.reminder.prompts import (PromptBook, PromptsConfig, ReminderConfig, last_round_samples,
                                      load_memory_context, training_samples, variant_memories)
from mmemory.reminder.teachers import TeacherConfig, make_teacher
from mmemory.seeds import differences_table, mean_over_seeds, seed_note, std_over_seeds
from mmemory.visdial import load_visdial

logger = logging.getLogger(__name__)

# (metrics key, column label, scale of the figure's bars): sacreBLEU is 0-100 like EMR's BLEU-4, the rest 0-1
TABLE_COLUMNS = (("rouge1_f1", "ROUGE-1 F1", 1), ("rouge2_f1", "ROUGE-2 F1", 1), ("rougeL_f1", "ROUGE-L F1", 1),
                 ("sacrebleu", "sacreBLEU (0-100)", 100), ("bertscore_f1", "BERTScore F1", 1))
# the options ranked by similarity to the generated answer (mmemory.reminder.evaluate), not VisDial's likelihood ranking
RANKING_KEY = "answer_similarity_ranking"
RANKING_COLUMNS = (("mrr", "MRR (answer similarity)"), ("r@1", "R@1 (answer similarity)"))


def prompt_book(prompts: dict) -> PromptBook:
    """The instruction and few-shot examples of config reminder.prompts."""
    cfg = PromptsConfig.from_dict(prompts)
    return PromptBook.load(cfg.instruction, cfg.fewshot, cfg.max_fewshot)


def run_pretrain_toy_vlm(vlm_in: str, out_dir: str, metrics_path: str, toy: dict, settings: dict) -> dict:
    """Pre-train the tiny Gemma-3 stand-in to copy, see and read on train scenes only (config data.toy for the scenes,
    reminder.toy_vlm for the settings; mmemory.toy.pretrain_vlm) and write its figures to `metrics_path`."""
    from mmemory.toy.pretrain_vlm import PretrainVLMConfig, pretrain_toy_vlm
    from mmemory.toy.visdial import ToyVisDialConfig

    t = ToyVisDialConfig.from_dict(toy)
    metrics = pretrain_toy_vlm(vlm_in, out_dir, {"train": t.n_train, "val": t.n_val, "test": t.n_test},
                               t.image_size, t.max_objects, PretrainVLMConfig.from_dict(settings))
    atomic_write_json(metrics_path, metrics, indent=2)
    return metrics


def run_finetune_vlm(data: str, train_json: str, model: str, finetune: dict, seed: int, prompts: dict,
                     reminder: dict, adapter_dir: str, checkpoints: str, metrics_path: str) -> dict:
    """The LoRA adapter for one training seed (config reminder.finetune, reminder.prompts and the reminder keys
    include_caption and memory_top_k; mmemory.reminder.finetune.run_finetune)."""
    from mmemory.reminder.finetune import FinetuneConfig, run_finetune

    r = ReminderConfig.from_dict(reminder)
    return run_finetune(data, train_json, model, FinetuneConfig.from_dict({**finetune, "seed": seed}),
                        prompt_book(prompts), adapter_dir, checkpoints, metrics_path,
                        include_caption=r.include_caption, memory_top_k=r.memory_top_k)


def run_generate(train_json: str, teacher_cfg: dict, prompts: dict, out: dict, progress_dir: str, seed: int = 0,
                 include_caption: bool = ReminderConfig.include_caption) -> dict:
    """generate_reminder_data: sample training rounds, ask the teacher (config reminder.teacher), write
    data/rejects/metrics."""
    cfg = TeacherConfig.from_dict(teacher_cfg)
    split = load_visdial(train_json)
    if cfg.max_dialogs:
        split.dialogs = split.dialogs[: cfg.max_dialogs]
    samples = training_samples(split, cfg.rounds_per_dialog, seed, include_last=cfg.include_last_round,
                               include_caption=include_caption)
    book = prompt_book(prompts)
    teacher = make_teacher(cfg, book)
    fp = Fingerprint(
        inputs={**file_digests(train_json), "images": files_digest(s.image_path for s in samples),
                "prompts": obj_digest([book.instruction, book.fewshot])},
        settings={"teacher": {k: v for k, v in asdict(cfg).items() if k not in ("concurrency", "timeout_s")},
                  "caption": include_caption, "seed": seed},
        models={"teacher": model_digest(cfg.model_path)})
    stats = generate_reminder_data(samples, teacher, out["data"], out["rejects"], progress_dir, fp,
                                   cfg.max_attempts, cfg.backoff_s, cfg.concurrency)
    reasons: dict[str, int] = {}
    for r in read_jsonl(out["rejects"]):
        key = r["reason"].split(":")[-1].strip()[:80]
        reasons[key] = reasons.get(key, 0) + 1
    metrics = {"teacher": cfg.backend, **stats, "reject_reasons": reasons}
    atomic_write_json(out["metrics"], metrics, indent=2)
    return metrics


def run_predict(variant: str, val_json: str, model: str, prompts: dict, gen: GenerationConfig, out: dict,
                progress_dir: str, adapter: str | None = None, memories_path: str | None = None,
                memory_top_k: int | None = ReminderConfig.memory_top_k,
                include_caption: bool = ReminderConfig.include_caption) -> dict:
    """predict_reminder for one variant on the last round of each dialogue of `val_json` (any evaluated split)."""

    split = load_visdial(val_json)
    samples = last_round_samples(split, include_caption)
    book = prompt_book(prompts)
    finetuned_instruction = True
    if adapter:
        meta_path = Path(adapter) / TRAINING_META
        if meta_path.exists():
            finetuned_instruction = json.loads(meta_path.read_text())["with_instruction"]
    memories = None
    if memories_path:  # the variant's block per dialogue, at most memory_top_k memories each
        memories = variant_memories(variant, split, load_memory_context(memories_path), memory_top_k)
    fp = Fingerprint(
        inputs={**file_digests(val_json, memories_path), "images": files_digest(s.image_path for s in samples),
                "prompts": obj_digest([book.instruction, book.fewshot])},
        settings={"variant": variant, "gen": asdict(gen), "top_k": memory_top_k, "caption": include_caption,
                  "finetuned_instruction": finetuned_instruction},
        models={"vlm": model_digest(model), "adapter": model_digest(adapter)})
    stats = predict_reminder(samples, variant, model, out["predictions"], out["generations"], progress_dir, fp,
                             book, gen, adapter, memories, memory_top_k, finetuned_instruction)
    atomic_write_json(out["metrics"], stats, indent=2)
    return stats


def run_evaluate(predictions: str, val_json: str, dense: str | None, eval_cfg: dict, out_path: str) -> dict:
    """evaluate_reminder: the generation metrics of one variant (`eval_cfg`: config reminder.evaluation)."""
    cfg = EvaluationConfig.from_dict(eval_cfg)
    m = evaluate_predictions(load_predictions(predictions), val_json, dense, cfg.bertscore_model,
                             cfg.bertscore_layers, cfg.ranking)
    atomic_write_json(out_path, m, indent=2)
    return m


# What each difference between two variants isolates (the reminder table's differences, on test).
COMPARISONS = [
    ("finetuned_memory", "finetuned_caption", "retrieval beyond the own caption (the memory's own contribution)"),
    ("finetuned_caption", "finetuned", "the own caption in the memory block"),
    ("finetuned_memory", "finetuned", "caption + retrieval together"),
    ("finetuned", "base", "the LoRA adapter"),
    ("prompt", "base", "the instruction and few-shot examples"),
]


def variants_table(metrics: dict[str, dict], n_seeds: dict[str, int] | None = None) -> list[dict]:
    """One row per variant in the seeds' shape (`metrics`: each variant's mean over its seeds).
    Each BLEU column says which BLEU it is; the ranking columns say they rank by answer similarity (not likelihood).
    `no final answer` and `missing prediction` count the dialogues scored as the empty answer (never dropped)."""
    rows = []
    for variant, m in metrics.items():
        row = {"variant": variant, **{label: m[key] for key, label, _ in TABLE_COLUMNS}}
        if RANKING_KEY in m:
            row.update({label: m[RANKING_KEY][key] for key, label in RANKING_COLUMNS})
        row["no final answer"] = m["n_no_final_answer"]
        row["missing prediction"] = m["n_missing_predictions"]
        row["n"] = m["n"]
        if n_seeds is not None:
            row["seeds"] = n_seeds.get(variant, 1)
        rows.append(row)
    return rows


CUE = re.compile(r"^in the earlier picture, ")


def question_prior(train_json: str, eval_json: str) -> dict[int, str]:
    """The strongest answer that never looks at a picture or a memory: for the last round of each dialogue of
    `eval_json`, the most frequent TRAIN answer (all rounds) to the same question text, else to the question without
    "in the earlier picture, " ("where was the green triangle?"), else to its first two words, else overall."""
    from collections import Counter

    keys = (lambda q: q, lambda q: CUE.sub("", q), lambda q: " ".join(q.split()[:2]))
    train = load_visdial(train_json)
    tables: list[dict[str, Counter]] = [{} for _ in keys]
    overall: Counter = Counter()
    for d in train.dialogs:
        for r in d["dialog"]:
            q, a = train.question(r), train.answer(r)
            for table, key in zip(tables, keys):
                table.setdefault(key(q), Counter())[a] += 1
            overall[a] += 1
    split = load_visdial(eval_json)
    out = {}
    for d in split.dialogs:
        q = split.question(d["dialog"][-1])
        pick = next((t[key(q)] for t, key in zip(tables, keys) if key(q) in t), overall)
        out[d["image_id"]] = pick.most_common(1)[0][0]
    return out


def _norm(answer: str) -> str:
    return answer.strip().lower()


def _top(answers: list[str]) -> tuple[str, float]:
    """The most common answer (case and surrounding space ignored) and its share."""
    from collections import Counter

    answer, n = Counter(_norm(a) for a in answers).most_common(1)[0]
    return answer, n / len(answers)


def _items(metrics: dict) -> dict[int, dict]:
    if "per_item" not in metrics:
        raise ValueError("a reminder metrics file has no per_item list: rerun evaluate_reminder "
                         "(snakemake --forcerun evaluate_reminder)")
    return {it["image_id"]: it for it in metrics["per_item"]}


def group_rows(per_seed: dict[str, list[dict]], prior: dict[int, str] | None) -> tuple[list[dict], dict]:
    """Exact match per question group (current / earlier picture) for every variant (mean ± sd over seeds) and
    the question prior; also the share of the most common final answer. Returns (rows, per-item exact lists:
    {(variant, group): [per seed: [0/1 per dialogue, in image-id order]]})."""
    import statistics

    rows, exact = [], {}
    first = _items(next(iter(per_seed.values()))[0])
    ids = sorted(first)
    groups = sorted({first[i]["group"] for i in ids})
    if prior is not None:
        exact.update({("question prior", g): [[int(_norm(prior[i]) == _norm(first[i]["reference"]))
                                               for i in ids if first[i]["group"] == g]] for g in groups})
        rows.append({"variant": "question prior (no picture, no memory)",
                     **{f"exact match ({g} picture)": round(statistics.fmean(exact[("question prior", g)][0]), 4)
                        for g in groups},
                     "top answer share": round(_top([prior[i] for i in ids])[1], 4), "seeds": 1})
    for v, ms in per_seed.items():
        items = [_items(m) for m in ms]
        row = {"variant": v}
        for g in groups:
            per = [[it[i]["exact"] for i in ids if it[i]["group"] == g] for it in items]
            exact[(v, g)] = per
            means = [statistics.fmean(p) for p in per]
            row[f"exact match ({g} picture)"] = round(statistics.fmean(means), 4)
            row[f"sd ({g})"] = round(statistics.stdev(means), 4) if len(means) > 1 else None
        row["top answer share"] = round(statistics.fmean(_top([it[i]["answer"] for i in ids])[1] for it in items), 4)
        row["top answer"] = _top([items[0][i]["answer"] for i in ids])[0]
        row["seeds"] = len(ms)
        rows.append(row)
    for g in groups:
        n = sum(first[i]["group"] == g for i in ids)
        for r in rows:
            r[f"n ({g})"] = n
    return rows, exact


def group_headline(rows: list[dict]) -> tuple[dict, dict]:
    """The exact-match headlines by question group (`group_rows`) and, for the report's overview figure, the controls
    drawn beside each: on earlier pictures `finetuned_memory` beside `finetuned` (no memory), `wrong_memory` (another
    user's block), `oracle_memory` (the ceiling) and the question prior; `finetuned` beside the prior."""
    by = {r["variant"].split(" (")[0]: r for r in rows}
    bars = (("finetuned_memory", "earlier", ("finetuned", "wrong_memory", "oracle_memory", "question prior")),
            ("finetuned", "earlier", ("question prior",)), ("finetuned", "current", ("question prior",)))
    headline, controls = {}, {}
    for v, g, others in bars:
        key = f"exact match ({g} picture)"
        if v not in by or key not in by[v]:
            continue
        name = f"{v} EM ({g} picture)"
        headline[name] = by[v][key]
        controls[name] = [{"control": o, "value": by[o][key]} for o in others if o in by and key in by[o]]
    return headline, controls


def retrieval_rows(per_seed: dict[str, list[dict]], context: dict, eval_json: str, top_k: int | None) -> list[dict]:
    """For the earlier-picture questions: whether the needed picture was among the memories the prompt showed
    (finetuned_memory's block), and each memory variant's exact match when it was and when it was not."""
    from mmemory.memory.context import asks_about, needed_rank

    split = load_visdial(eval_json)
    earlier = [d for d in split.dialogs if asks_about(d) is not None]
    if not earlier:
        return []
    shown = {d["image_id"]: (needed_rank(d, context.get(str(d["image_id"]), [])) or 10 ** 9) <= (top_k or 10 ** 9)
             for d in earlier}
    rows = []
    for v in ("finetuned", "finetuned_caption", "finetuned_memory", "oracle_memory", "wrong_memory"):
        if v not in per_seed:
            continue
        items = [_items(m) for m in per_seed[v]]
        row = {"variant": v}
        for label, want in (("retrieved", True), ("not retrieved", False)):
            ids = [i for i, s in shown.items() if s == want]
            row[f"exact match, needed picture {label}"] = (
                round(sum(it[i]["exact"] for it in items for i in ids) / (len(ids) * len(items)), 4) if ids else None)
            row[f"n {label}"] = len(ids)
        rows.append(row)
    return rows


def reminder_controls(exact: dict, per_seed: dict[str, list[dict]]) -> list[dict]:
    """The `<reminder>` stage's claims (mmemory.controls) on the evaluated split."""
    from mmemory.controls import claim, not_shown

    out = []

    def add(text, t, c, group, relation="greater", note=None):
        if (t, group) not in exact or (c, group) not in exact:
            out.append(not_shown(text, f"{t if (t, group) not in exact else c} was not run on {group}-picture "
                                       "questions"))
            return
        tv, cv = exact[(t, group)], exact[(c, group)]
        mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
        out.append(claim(text, t, c, f"exact match ({group}-picture questions)", [mean(x) for x in tv],
                         [mean(x) for x in cv], relation=relation, per_item=(tv, cv), note=note))

    add("<reminder>: the fine-tuned VLM sees: finetuned beats the question prior", "finetuned", "question prior",
        "current")
    add("<reminder>: retrieved memory answers questions about earlier pictures: finetuned_memory beats finetuned",
        "finetuned_memory", "finetuned", "earlier")
    add("<reminder>: the memory's own contribution: finetuned_memory beats finetuned_caption (own caption only)",
        "finetuned_memory", "finetuned_caption", "earlier")
    add("<reminder>: what the memory says, not any block: finetuned_memory beats wrong_memory (another user's "
        "block of the same size and format)", "finetuned_memory", "wrong_memory", "earlier")
    add("<reminder>: the oracle memory is the ceiling: oracle_memory ≥ finetuned_memory", "oracle_memory",
        "finetuned_memory", "earlier", relation="at_least")
    add("<reminder>: another user's memories do not help: wrong_memory stays at finetuned", "wrong_memory",
        "finetuned", "earlier", relation="within")
    return out


def build_table(runs: dict[str, list[str]], teacher_metrics: str, finetune_metrics: list[str], out_json: str,
                out_png: str, train_json: str | None = None, eval_json: str | None = None,
                context: str | None = None, memory_top_k: int | None = ReminderConfig.memory_top_k,
                toy_vlm_metrics: str | None = None) -> dict:
    """reminder_table: `runs` maps each variant to its metrics files, one per training seed (untrained variants:
    one). Trained rows are the mean over seeds, with the seed-to-seed spread in a table of its own, and the
    differences table names a difference a gain only when it is larger than its spread."""

    per_seed = {v: [json.loads(Path(p).read_text()) for p in paths] for v, paths in runs.items()}
    metrics = {v: mean_over_seeds(ms) for v, ms in per_seed.items()}
    stds = {v: {(key,): std_over_seeds(ms, (key,)) for key, _, _ in TABLE_COLUMNS} for v, ms in per_seed.items()}
    n_seeds = {v: len(ms) for v, ms in per_seed.items()}
    max_seeds = max(n_seeds.values())
    teacher = json.loads(Path(teacher_metrics).read_text())
    trains = [json.loads(Path(p).read_text()) for p in finetune_metrics]
    train = mean_over_seeds(trains) if trains else {}
    any_m = next(iter(metrics.values()))
    split = Path(next(iter(runs.values()))[0]).parent.name
    title = (f"Variants on the last round of {any_m['n']} {split} dialogues (final answer after `</reminder>`; "
             f"BERTScore: {any_m['bertscore_model']}, layer {any_m['bertscore_layers']}; {seed_note(max_seeds)})")
    tables = {title: variants_table(metrics, n_seeds)}
    if max_seeds > 1:
        tables["Seed-to-seed spread of the trained variants (sample std over train_seeds)"] = [
            {"variant": v, **{label: None if stds[v][(key,)] is None else round(stds[v][(key,)], 4)
                              for key, label, _ in TABLE_COLUMNS}, "seeds": n_seeds[v]}
            for v in metrics if n_seeds[v] > 1]
    diffs = differences_table(metrics, stds, COMPARISONS,
                              [((key,), label) for key, label, _ in TABLE_COLUMNS if key != "rouge2_f1"])
    if diffs:
        tables[f"Differences between variants on {split} (a gain only when larger than its seed spread)"] = diffs
    out = {
        "tables": tables,
        "headline": {f"{v} ROUGE-1": m["rouge1_f1"] for v, m in metrics.items()},
        "teacher": {k: v for k, v in teacher.items() if not isinstance(v, dict)},
        "finetune": {k: v for k, v in train.items() if k in ("backend", "examples", "steps", "first_loss",
                                                              "last_loss", "train_loss", "trainable_params",
                                                              "train_seconds")},
        "train_seeds": max_seeds,
        "answer_similarity_ranking": any_m.get(RANKING_KEY, {}).get("method", "none"),
        "sacrebleu": "sacrebleu corpus_bleu, 0-100 (the EMR table gives it beside the seeds' nltk BLEU-4)",
    }
    prior = question_prior(train_json, eval_json) if train_json and eval_json else None
    if not all("per_item" in m for ms in per_seed.values() for m in ms):
        from mmemory.controls import not_shown

        logger.warning("metrics files without per_item (written before per-item scoring): no question-group table "
                       "and no positive controls; rerun with --forcerun evaluate_reminder")
        out["positive_controls"] = [not_shown("<reminder> claims", "the metrics files have no per-item scores: "
                                              "rerun evaluate_reminder (--forcerun evaluate_reminder)")]
        save_figure(_variants_figure(metrics, stds, split), out_png)
        atomic_write_json(out_json, out, indent=2)
        return out
    rows, exact = group_rows(per_seed, prior)
    tables[f"Exact match of the final answer by question group on {split}: about the current picture, or about an "
           "earlier picture of the same user (only a memory answers those); mean over seeds, sd their spread"] = rows
    if context and eval_json:
        r_rows = retrieval_rows(per_seed, json.loads(Path(context).read_text()), eval_json, memory_top_k)
        if r_rows:
            tables[f"Earlier-picture questions on {split}, split by whether the memory stage retrieved the needed "
                   f"picture into the top {memory_top_k} memories the prompt shows"] = r_rows
    if toy_vlm_metrics:
        tv = json.loads(Path(toy_vlm_metrics).read_text())
        tables["The tiny Gemma-3 stand-in's own abilities, before the LoRA (val scenes, exact match; "
               "pretrain_toy_vlm)"] = [
            {"stand-in": label, **{task: None if d.get(task) is None else round(d[task], 4)
                                   for task in ("caption", "vqa", "read")}}
            for label, d in (("random init", tv["val_exact_match_before"]),
                             ("pre-trained", tv["val_exact_match_after"]))]
        out["toy_vlm"] = {k: tv[k] for k in ("steps", "first_loss", "last_loss", "seconds", "train_scenes")}
    out["positive_controls"] = reminder_controls(exact, per_seed)
    headline, controls = group_headline(rows)
    out["headline"].update(headline)
    out["headline_controls"] = controls
    save_figure(_variants_figure(metrics, stds, split), out_png)
    atomic_write_json(out_json, out, indent=2)
    return out


def _variants_figure(metrics: dict[str, dict], stds: dict[str, dict], split: str):
    """Bars per metric and variant, on one 0-1 axis (sacreBLEU divided by 100), error bars the seed spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(metrics))
    for i, (v, m) in enumerate(metrics.items()):
        err = [(stds[v][(k,)] or 0.0) / s for k, _, s in TABLE_COLUMNS]
        ax.bar([j + i * width for j in range(len(TABLE_COLUMNS))], [m[k] / s for k, _, s in TABLE_COLUMNS], width,
               yerr=err if any(err) else None, capsize=2, label=v)
    ax.set_xticks([j + width * (len(metrics) - 1) / 2 for j in range(len(TABLE_COLUMNS))])
    ax.set_xticklabels([label if s == 1 else f"{label} / {s}" for _, label, s in TABLE_COLUMNS], fontsize=8)
    ax.set_ylabel("score (0-1)")
    ax.set_title(f"<reminder> variants, last round of each {split} dialogue", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
