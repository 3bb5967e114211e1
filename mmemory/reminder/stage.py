"""The reminder stage's steps as functions of config sections and paths (the workflow scripts call these).

Each returns the dict written to the step's metrics file; all outputs are written atomically.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from mmemory.io import atomic_write_json, read_jsonl
from mmemory.visdial import load_visdial

logger = logging.getLogger(__name__)

# (metrics key, column label, scale of the figure's bars): sacreBLEU is 0-100 like EMR's BLEU-4, the rest 0-1
TABLE_COLUMNS = (("rouge1_f1", "ROUGE-1 F1", 1), ("rouge2_f1", "ROUGE-2 F1", 1), ("rougeL_f1", "ROUGE-L F1", 1),
                 ("sacrebleu", "sacreBLEU (0-100)", 100), ("bertscore_f1", "BERTScore F1", 1))
# the options ranked by similarity to the generated answer (mmemory.evaluate), not VisDial's likelihood ranking
RANKING_KEY = "answer_similarity_ranking"
RANKING_COLUMNS = (("mrr", "MRR (answer similarity)"), ("r@1", "R@1 (answer similarity)"))
TRAINING_META = "reminder_training.json"  # written next to the adapter: how its prompts were built


def variant_inputs(variant: str) -> dict:
    """predict_reminder's extra inputs: the adapter for the finetuned variants, the memory context for
    finetuned_memory (written by the memory stage)."""
    inputs = {}
    if variant.startswith("finetuned"):
        inputs["adapter"] = "results/reminder/finetuned/adapter"
    if variant == "finetuned_memory":
        inputs["memories"] = "results/memory/reminder_context.json"
    return inputs


def prompt_book(prompts: dict):
    from mmemory.reminder.prompts import PromptBook

    return PromptBook.load(prompts["instruction"], prompts.get("fewshot"), prompts.get("max_fewshot"))


def run_generate(train_json: str, teacher_cfg: dict, prompts: dict, out: dict, progress_dir: str, seed: int = 0,
                 include_caption: bool = False) -> dict:
    """generate_reminder_data: sample training rounds, ask the teacher, write data/rejects/metrics."""
    from mmemory.fingerprint import Fingerprint, file_digests, files_digest, model_digest, obj_digest
    from mmemory.reminder.generate import generate_reminder_data
    from mmemory.reminder.prompts import training_samples
    from mmemory.reminder.teachers import make_teacher

    split = load_visdial(train_json)
    if teacher_cfg.get("max_dialogs"):
        split.dialogs = split.dialogs[: teacher_cfg["max_dialogs"]]
    samples = training_samples(split, teacher_cfg.get("rounds_per_dialog"), seed,
                               teacher_cfg.get("include_last_round", True), include_caption)
    book = prompt_book(prompts)
    teacher = make_teacher(teacher_cfg, book)
    fp = Fingerprint(
        inputs={**file_digests(train_json), "images": files_digest(s.image_path for s in samples),
                "prompts": obj_digest([book.instruction, book.fewshot])},
        settings={"teacher": {k: v for k, v in teacher_cfg.items() if k not in ("concurrency", "timeout_s")},
                  "caption": include_caption, "seed": seed},
        models={"teacher": model_digest(teacher_cfg.get("model_path"))})
    stats = generate_reminder_data(samples, teacher, out["data"], out["rejects"], progress_dir, fp,
                                   teacher_cfg.get("max_attempts", 3), teacher_cfg.get("backoff_s", 1.0),
                                   teacher_cfg.get("concurrency", 1))
    reasons: dict[str, int] = {}
    for r in read_jsonl(out["rejects"]):
        key = r["reason"].split(":")[-1].strip()[:80]
        reasons[key] = reasons.get(key, 0) + 1
    metrics = {"teacher": teacher_cfg["backend"], **stats, "reject_reasons": reasons}
    atomic_write_json(out["metrics"], metrics, indent=2)
    return metrics


def run_finetune(data_jsonl: str, train_json: str, model: str, ft_cfg: dict, prompts: dict, adapter_dir: str,
                 checkpoint_dir: str, metrics_path: str, include_caption: bool = False,
                 threads: int | None = None, memory_top_k: int = 3, seed: int = 0) -> dict:
    """finetune_vlm: teacher rows -> chat examples with their images -> LoRA adapter + processor.
    A seeded share `memory_share` of the examples carries a memory block (`simulated_memories`, at most
    memory_top_k entries) so that `finetuned_memory` is prompted in a format the adapter has seen."""
    import numpy as np
    from PIL import Image

    from mmemory.reminder.finetune import FinetuneConfig, chat_example, finetune_vlm
    from mmemory.reminder.prompts import make_sample, simulated_memories

    split = load_visdial(train_json)
    dialogs = split.by_image_id()
    book = prompt_book(prompts)
    with_instruction = bool(ft_cfg.get("with_instruction", True))
    rows = read_jsonl(data_jsonl)
    memory_share = float(ft_cfg.get("memory_share", 0.0))
    rng = np.random.default_rng(seed)
    examples, with_memories = [], 0
    for n, row in enumerate(rows, 1):
        d = dialogs.get(row["image_id"])
        if d is None:
            raise ValueError(f"{data_jsonl}:{n}: image_id {row['image_id']} is not in {train_json}; regenerate "
                             "the teacher data for this training split")
        sample = make_sample(split, d, row["round"], include_caption)
        if sample.conversation != row["conversation"]:
            raise ValueError(f"{data_jsonl}:{n}: the conversation differs from the one rebuilt from {train_json} "
                             f"(image_id {row['image_id']}, round {row['round']}); regenerate the teacher data")
        image = Image.open(sample.image_path).convert("RGB") if sample.image_path else None
        memories = None
        if rng.random() < memory_share:
            memories = simulated_memories(split, d, row["round"], memory_top_k, rng)
            with_memories += 1
        examples.append(chat_example(sample, row["response"], book, image, with_instruction, memories))
    known = set(FinetuneConfig.__dataclass_fields__)
    cfg = FinetuneConfig(**{k: v for k, v in ft_cfg.items() if k in known})
    from mmemory.fingerprint import Fingerprint, file_digests, files_digest, model_digest, obj_digest

    # the base model's files are part of the fingerprint: a rebuilt model never resumes a stale adapter
    fp = Fingerprint(
        inputs={**file_digests(data_jsonl, train_json), "images": files_digest(
            d.get("image_path") for d in (dialogs.get(r["image_id"]) for r in rows)),
                "prompts": obj_digest(book.instruction if with_instruction else None)},
        settings={"cfg": asdict(cfg), "memories": [memory_share, memory_top_k, seed], "caption": include_caption},
        models={"vlm": model_digest(model)})
    stats = finetune_vlm(examples, model, adapter_dir, checkpoint_dir, cfg, threads, fp)
    stats["examples_with_memory_block"] = with_memories
    atomic_write_json(Path(adapter_dir) / TRAINING_META,
                      {"with_instruction": with_instruction, "instruction": book.instruction, "base_model": model})
    atomic_write_json(metrics_path, stats, indent=2)
    return stats


def run_predict(variant: str, val_json: str, model: str, prompts: dict, gen_cfg: dict, out: dict,
                progress_dir: str, adapter: str | None = None, memories_path: str | None = None,
                memory_top_k: int | None = None, include_caption: bool = False) -> dict:
    """predict_reminder for one variant on the last round of each val dialogue."""
    from mmemory.fingerprint import Fingerprint, file_digests, files_digest, model_digest, obj_digest
    from mmemory.reminder.predict import GenerationConfig, predict_reminder
    from mmemory.reminder.prompts import last_round_samples, load_memory_context

    split = load_visdial(val_json)
    samples = last_round_samples(split, include_caption)
    book = prompt_book(prompts)
    finetuned_instruction = True
    if adapter:
        meta_path = Path(adapter) / TRAINING_META
        if meta_path.exists():
            finetuned_instruction = json.loads(meta_path.read_text())["with_instruction"]
    memories = load_memory_context(memories_path) if memories_path else None
    known = set(GenerationConfig.__dataclass_fields__)
    gen = GenerationConfig(**{k: v for k, v in gen_cfg.items() if k in known})
    fp = Fingerprint(
        inputs={**file_digests(val_json, memories_path), "images": files_digest(s.image_path for s in samples),
                "prompts": obj_digest([book.instruction, book.fewshot])},
        settings={"variant": variant, "gen": gen_cfg, "top_k": memory_top_k, "caption": include_caption,
                  "finetuned_instruction": finetuned_instruction},
        models={"vlm": model_digest(model), "adapter": model_digest(adapter)})
    stats = predict_reminder(samples, variant, model, out["predictions"], out["generations"], progress_dir, fp,
                             book, gen, adapter, memories, memory_top_k, finetuned_instruction)
    atomic_write_json(out["metrics"], stats, indent=2)
    return stats


def run_evaluate(predictions: str, val_json: str, dense: str | None, eval_cfg: dict, out_path: str) -> dict:
    """evaluate_reminder: the generation metrics of one variant."""
    from mmemory.evaluate import evaluate_predictions, load_predictions

    m = evaluate_predictions(load_predictions(predictions), val_json, dense, eval_cfg.get("bertscore_model"),
                             eval_cfg.get("bertscore_layers"), eval_cfg.get("ranking", "minilm"))
    atomic_write_json(out_path, m, indent=2)
    return m


def variants_table(metrics: dict[str, dict]) -> list[dict]:
    """One row per variant in the seeds' shape, plus a delta row finetuned_memory - finetuned when both exist.
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
        rows.append(row)
    if "finetuned" in metrics and "finetuned_memory" in metrics:
        a, b = rows[list(metrics).index("finetuned")], rows[list(metrics).index("finetuned_memory")]
        rows.append({"variant": "Δ finetuned_memory − finetuned",
                     **{k: b[k] - a[k] for k in b if k not in ("variant", "n") and isinstance(b[k], (int, float))},
                     "n": b["n"]})
    return rows


def build_table(variant_metrics: dict[str, str], teacher_metrics: str, finetune_metrics: str | None, out_json: str,
                out_png: str) -> dict:
    """reminder_table: gather the variants' metrics into the report's table, headline numbers and a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = {v: json.loads(Path(p).read_text()) for v, p in variant_metrics.items()}
    rows = variants_table(metrics)
    teacher = json.loads(Path(teacher_metrics).read_text())
    train = json.loads(Path(finetune_metrics).read_text()) if finetune_metrics else {}
    any_m = next(iter(metrics.values()))
    out = {
        "tables": {f"Variants on the last round of {any_m['n']} val dialogues (final answer after `</reminder>`; "
                   f"BERTScore: {any_m['bertscore_model']}, layer {any_m['bertscore_layers']})": rows},
        "headline": {f"{v} ROUGE-1": m["rouge1_f1"] for v, m in metrics.items()},
        "teacher": {k: v for k, v in teacher.items() if not isinstance(v, dict)},
        "finetune": {k: v for k, v in train.items() if k in ("backend", "examples", "steps", "first_loss",
                                                              "last_loss", "trainable_params", "train_seconds")},
        "answer_similarity_ranking": any_m.get(RANKING_KEY, {}).get("method", "none"),
        "sacrebleu": "sacrebleu corpus_bleu, 0-100 (the EMR table gives it beside the seeds' nltk BLEU-4)",
    }
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(metrics))
    for i, (v, m) in enumerate(metrics.items()):
        ax.bar([j + i * width for j in range(len(TABLE_COLUMNS))], [m[k] / s for k, _, s in TABLE_COLUMNS], width,
               label=v)
    ax.set_xticks([j + width * (len(metrics) - 1) / 2 for j in range(len(TABLE_COLUMNS))])
    ax.set_xticklabels([label if s == 1 else f"{label} / {s}" for _, label, s in TABLE_COLUMNS], fontsize=8)
    ax.set_ylabel("score (0-1)")
    ax.set_title("<reminder> variants (last round of each val dialogue)")
    ax.legend()
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out_png).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out_png)
    atomic_write_json(out_json, out, indent=2)
    return out
