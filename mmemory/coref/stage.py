"""The coref stage's data step (rule `coref_data`): the toy dialogues or the user's file -> validated, content-disjoint
train / val / test JSON files and a data report (counts by reason of what was dropped).

    cfg = CorefDataConfig.from_dict(config["coref"]["data"])
    prepare_coref_data(cfg, {"train": ..., "val": ..., "test": ...}, "data_report.json")
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmemory.config import StrictConfig, check_types
from mmemory.coref.data import (PARSE_REASON, CorefError, Problem, SeedFormatError, dump_coref, load_coref,
                                parse_seed_text, shared_content, split_dialogues, validate_dialogues)
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
