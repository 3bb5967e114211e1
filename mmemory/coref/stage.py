"""The coref stage's steps (the workflow scripts call these): the data (rule `coref_data`: the toy dialogues or the
user's file -> validated, content-disjoint train / val / test JSON files and a data report, counts by reason of what
was dropped), the toy models (`build_coref_toy_models`), evaluation (`eval_coref`) and the table (`coref_table`:
the tables of `mmemory.coref.report`, metrics.json and the figure).

    cfg = CorefDataConfig.from_dict(config["coref"]["data"])
    prepare_coref_data(cfg, {"train": ..., "val": ..., "test": ...}, "data_report.json")
    build_table({"tiny-m": {"before": ["before/s0/test/eval.json"], "finetuned": ["finetuned/s0/test/eval.json"]}},
                "train.json", "test.json", {"tiny-m": ["finetuned/s0/train_metrics.json"]},
                "data_report.json", "metrics.json", "accuracy.png", val_json="val.json", oracle=True)
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmemory.config import StrictConfig, check_types
from mmemory.coref.data import (PARSE_REASON, CorefError, Problem, SeedFormatError, dump_coref, load_coref,
                                parse_seed_text, shared_content, split_dialogues, validate_dialogues)
from mmemory.coref.evaluate import baseline_rows
from mmemory.coref.report import (TRAINING_CAPTION, coref_tables, plot_accuracy, positive_controls, rate_cell,
                                  seed_rate, strongest_baseline)
from mmemory.coref.toy import RULES, make_toy_dialogues
from mmemory.io import atomic_write_json, atomic_write_text, excerpt, read_json_file, read_text_file
from mmemory.splits import empty_split_message

logger = logging.getLogger(__name__)


@dataclass
class CorefDataConfig(StrictConfig):
    """config coref.data: where the dialogues come from and how they are split."""

    SECTION = "coref.data"

    source: str = "toy"  # toy: make_toy_dialogues; file: `path` (a JSON list in the schema, or seed-format text)
    path: str | None = None  # source file: .json (the schema, docs/coref.md) or .txt (seed 002 blocks, `=====` between)
    strict: bool = True  # true: the first bad dialogue stops the run; false: drop it, count it in data_report.json
    test_share: float = 0.2  # the seed's 80/20 train/test (1,380 / 346 of 1,726)
    val_share_of_train: float = 0.1  # val carved from train, for choosing settings (the best epoch by val loss)
    seed: int = 0  # the split's (and the toy generator's) seed
    toy_n: int = 2000  # toy dialogues in all (before the split)
    toy_rules: list[str] = field(default_factory=lambda: list(RULES))  # toy referent rules, taken in turn

    def __post_init__(self):
        check_types(self)
        if self.source not in ("toy", "file"):
            raise CorefError(f"config coref.data.source {self.source!r}: use toy or file")
        if self.source == "file" and not self.path:
            raise CorefError("config coref.data.source is file but coref.data.path is not set. Fix: give the path "
                             "of a JSON list of dialogues (docs/coref.md) or a seed-format text file")


SEED_BLOCK_SEPARATOR = "====="  # a line of five or more = between seed-format blocks
TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".json",)


def seed_text_blocks(text: str) -> list[tuple[int, str]]:
    """(first line in the file, text) of each seed-format block; blocks are separated by lines of ===== (five or
    more `=`), and blank blocks are left out."""
    blocks, start, lines = [], 1, []
    for n, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if len(stripped) >= len(SEED_BLOCK_SEPARATOR) and set(stripped) == {"="}:
            if any(x.strip() for x in lines):
                blocks.append((start, "\n".join(lines)))
            start, lines = n + 1, []
        else:
            lines.append(line)
    if any(x.strip() for x in lines):
        blocks.append((start, "\n".join(lines)))
    return blocks


def read_source(cfg: CorefDataConfig) -> tuple[list[dict], str, list[Problem], list[int]]:
    """The raw schema dicts of the configured source, a name for messages, the seed-format blocks that did not parse
    (lenient mode; strict raises), and where each item was in the file (block or list index)."""
    if cfg.source == "toy":
        items = make_toy_dialogues(cfg.toy_n, seed=cfg.seed, rules=tuple(cfg.toy_rules))
        return items, "toy coref generator", [], list(range(len(items)))
    path = Path(cfg.path)
    if not path.is_file():
        raise CorefError(f"coref.data.path {path}: no such file. Fix: point coref.data.path at your dialogues")
    suffix = path.suffix.lower()  # `.TXT` is seed text too, never parsed as JSON
    if suffix in TEXT_SUFFIXES:
        text = read_text_file(path, CorefError)  # a byte-order mark is dropped; not UTF-8: file, line and fix
        items, problems, positions = [], [], []
        for i, (first_line, block) in enumerate(seed_text_blocks(text)):
            try:
                items.append(parse_seed_text(block, dialog_id=f"{path.stem}-{i}", first_line=first_line))
                positions.append(i)
            except SeedFormatError as e:
                if cfg.strict:
                    raise SeedFormatError(f"{path}: block {i} (from line {first_line}): {e} (or set coref.data."
                                          "strict: false to drop such blocks and count them in data_report.json)"
                                          ) from None
                problems.append(Problem(str(path), i, f"{path.stem}-{i}", PARSE_REASON, str(e)))
                logger.warning("%s: block %d (from line %d) does not parse; dropped: %s", path, i, first_line, e)
        return items, str(path), problems, positions
    if suffix in JSON_SUFFIXES:
        items = read_json_file(path, CorefError, "write a JSON list of dialogues (docs/coref.md)")
        return items, str(path), [], list(range(len(items))) if isinstance(items, list) else []
    raise CorefError(f"coref.data.path {path}: the suffix {path.suffix!r} is neither .json (a JSON list of dialogues) "
                     "nor .txt (seed 002's text blocks). Fix: rename the file to the suffix of its format")


def prepare_coref_data(cfg: CorefDataConfig, out: dict[str, str], report_path: str) -> dict:
    """Validate, split (train / val / test, disjoint by content) and write the splits and the data report. Every
    dropped block or dialogue is counted by reason (`n_items == n_kept + n_dropped`); an empty train, val or test
    split is refused before anything is written."""
    items, source, parse_problems, positions = read_source(cfg)
    dialogues, report = validate_dialogues(items, strict=cfg.strict, source=source, positions=positions)
    report.n_items += len(parse_problems)
    report.problems = sorted(parse_problems + report.problems, key=lambda p: p.index)
    if not dialogues:  # the report is not written (the rule failed), so the message carries the reasons
        first = report.problems[0].message() if report.problems else "the source holds no dialogue"
        raise CorefError(f"{source}: no valid dialogue left ({report.n_items} read; dropped: "
                         f"{report.dropped_by_reason or 'none'}). The first: {excerpt(first, 400)}")
    splits = split_dialogues(dialogues, test_share=cfg.test_share, val_share_of_train=cfg.val_share_of_train,
                             seed=cfg.seed)
    msg = empty_split_message({k: len(v) for k, v in splits.items()}, len(dialogues), source, cfg.test_share,
                              cfg.val_share_of_train, "dialogues", CorefDataConfig.SECTION)
    if msg:
        raise CorefError(msg)
    crossing = shared_content(splits)
    if crossing:  # split_dialogues groups by content, so this is a bug, never the data's fault
        raise AssertionError(f"{len(crossing)} dialogue texts cross splits")
    for name, path in out.items():
        atomic_write_text(path, dump_coref(splits[name]))
    summary = {**report.to_json(), "splits": {k: len(v) for k, v in splits.items()}, "config": asdict(cfg),
               "answer_letters": {k: _letters(v) for k, v in splits.items()}}
    atomic_write_json(report_path, summary, indent=1)
    logger.info("coref data: %s", summary["splits"])
    return summary


def _letters(dialogues) -> dict[str, int]:
    from collections import Counter

    return dict(sorted(Counter(d.answer for d in dialogues).items()))


def load_split(path: str):
    """A split file written by prepare_coref_data, as Dialogues (checked again: a hand-edited file fails loudly)."""
    return load_coref(path, strict=True)[0]


# ---------------------------------------------------------------- the models and their evaluation

def build_toy_models(train_json: str, out: dict[str, str], sizes: dict[str, dict], seed: int = 0,
                     target: str = "option") -> dict:
    """The tiny Llamas of config coref.toy_models ({name: size}), written to `out` ({name: folder}); their tokenizer
    learns the prompts and the targets in the format `target` (coref.train.target)."""
    from mmemory.coref.models import CorefToySize, build_toy_coref_models

    return build_toy_coref_models(train_json, dict(out), {name: CorefToySize.from_dict(s) for name, s in sizes.items()},
                                  seed=seed, target=target)


def run_eval(model: str, test_json: str, out_json: str, eval_cfg: dict, untuned: bool = False) -> dict:
    """Both protocols (and the rotated choices) on one split for one model (config coref.eval); an `untuned` model
    answers in coref.eval.untuned_answer_format when one is set."""
    from dataclasses import replace

    from mmemory.coref.evaluate import CorefEvalConfig, evaluate_coref

    cfg = CorefEvalConfig.from_dict(eval_cfg)
    if untuned and cfg.untuned_answer_format:
        cfg = replace(cfg, answer_format=cfg.untuned_answer_format)
    return evaluate_coref(model, test_json, out_json, cfg)


# ---------------------------------------------------------------- the table (rule coref_table)

FORCERUN = "snakemake --forcerun eval_coref"

def _check_items(path: str, result: dict, test_ids: list[str], test_json: str) -> dict:
    ids = [str(p["dialog_id"]) for p in result.get("predictions", [])]
    if ids != test_ids:
        missing = len(set(test_ids) - set(ids))
        raise ValueError(f"{path}: scored {len(ids)} dialogues, not the {len(test_ids)} of {test_json} in their "
                         f"order ({missing} test dialogues missing; the test split or coref.eval.limit changed "
                         f"since it ran). Fix: rerun the evaluations ({FORCERUN})")
    return result


def build_table(runs: dict[str, dict[str, list[str]]], train_json: str, test_json: str,
                train_metrics_paths: dict[str, list[str]], data_report_path: str, out_json: str,
                out_png: str, val_json: str | None = None, oracle: bool = False) -> dict:
    """Load every eval.json of `runs` (checked against the test split), the training metrics and the data report;
    write metrics.json (tables, headline, data, train_seeds, baselines, positive_controls) and the accuracy figure
    atomically; return metrics. `val_json` chooses the shortcut logistic regression's C; `oracle` (toy data) adds
    the rule reader, the per-kind table and the per-kind claims."""
    train, test = load_coref(train_json, strict=True)[0], load_coref(test_json, strict=True)[0]
    val = load_coref(val_json, strict=True)[0] if val_json else None
    test_ids = [str(d.dialog_id) for d in test]
    results = {m: {v: [_check_items(p, read_json_file(p), test_ids, test_json) for p in paths]
                   for v, paths in variants.items()} for m, variants in runs.items()}
    # each train_metrics.json records its settings, the training seed among them
    trains = {m: [{**t, "seed": t.get("config", {}).get("seed")} for t in map(read_json_file, paths)]
              for m, paths in train_metrics_paths.items()}
    baselines = baseline_rows(train, test, val=val, oracle=oracle)
    tables = coref_tables(results, train, test, trains, val_dialogues=val, oracle=oracle, baselines=baselines)
    report = read_json_file(data_report_path)
    n_seeds = max((len(v.get("finetuned") or []) for v in results.values()), default=0)
    headline, headline_controls = {}, {}
    chance = next(b for b in baselines if b.get("kind") == "chance")
    best = strongest_baseline(baselines)
    for m, variants in results.items():
        if variants.get("finetuned"):
            headline[f"{m} fine-tuned object acc"] = seed_rate(
                [r["generation"]["object_acc"] for r in variants["finetuned"]])["value"]
            headline[f"{m} fine-tuned acc (likelihood)"] = seed_rate(
                [r["likelihood"]["acc"] for r in variants["finetuned"]])["value"]
            headline_controls[f"{m} fine-tuned object acc"] = [
                {"control": b["baseline"], "value": b["object_acc"]["value"]}
                for b in ([chance] if best is chance else [chance, best])]
            headline_controls[f"{m} fine-tuned acc (likelihood)"] = [
                {"control": chance["baseline"], "value": chance["object_acc"]["value"]}]
    comparisons = next(rows for caption, rows in tables.items() if caption.startswith("Fine-tuned against"))
    out = {
        "tables": tables,
        "headline": headline,
        "headline_controls": headline_controls,
        "splits": {TRAINING_CAPTION: "train"},
        "beats_every_baseline_by_ci": {m: all(r["beats by more than its CI"] == "yes" for r in comparisons
                                              if r["model"] == m)
                                       for m in dict.fromkeys(r["model"] for r in comparisons)},
        "data": {"source": report.get("source"), "kept": report.get("n_kept"), "dropped": report.get("n_dropped"),
                 **{f"{k} dialogues": v for k, v in (report.get("splits") or {}).items()}},
        "train_seeds": n_seeds,
        "baselines": {b["baseline"]: {"kind": b.get("kind"), "object_acc": rate_cell(b["object_acc"]),
                                      "note": b.get("note"),
                                      **({"chosen_on_val": b["chosen_on_val"], "coefficients": b["coefficients"]}
                                         if "chosen_on_val" in b else {})} for b in baselines},
        "strongest_baseline": strongest_baseline(baselines)["baseline"],
        "positive_controls": positive_controls(results, baselines, test, kinds=oracle),
    }
    plot_accuracy(results, baselines, out_png)
    atomic_write_json(out_json, out, indent=2)
    logger.info("coref table: %s", json.dumps(headline))
    return out
