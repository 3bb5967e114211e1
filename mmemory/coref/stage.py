"""The coref stage's data step (rule `coref_data`): the toy dialogues or the user's file -> validated, content-disjoint
train / val / test JSON files and a data report (counts by reason of what was dropped).

    cfg = CorefDataConfig.from_dict(config["coref"]["data"])
    prepare_coref_data(cfg, {"train": ..., "val": ..., "test": ...}, "data_report.json")
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmemory.config import StrictConfig
from mmemory.coref.data import (CorefError, SeedFormatError, dump_coref, load_coref, parse_seed_text,
                                shared_content, split_dialogues, validate_dialogues)
from mmemory.coref.toy import RULES, make_toy_dialogues
from mmemory.io import atomic_write_json, atomic_write_text

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
        if self.source not in ("toy", "file"):
            raise CorefError(f"config coref.data.source {self.source!r}: use toy or file")
        if self.source == "file" and not self.path:
            raise CorefError("config coref.data.source is file but coref.data.path is not set. Fix: give the path "
                             "of a JSON list of dialogues (docs/coref.md) or a seed-format text file")


SEED_BLOCK_SEPARATOR = "====="


def read_source(cfg: CorefDataConfig) -> tuple[list[dict], str]:
    """The raw schema dicts of the configured source, and a name for messages."""
    if cfg.source == "toy":
        return make_toy_dialogues(cfg.toy_n, seed=cfg.seed, rules=tuple(cfg.toy_rules)), "toy coref generator"
    path = Path(cfg.path)
    if not path.exists():
        raise CorefError(f"coref.data.path {path}: no such file. Fix: point coref.data.path at your dialogues")
    if path.suffix == ".txt":
        blocks = [b for b in path.read_text(encoding="utf-8").split(f"\n{SEED_BLOCK_SEPARATOR}") if b.strip()]
        items = []
        for i, block in enumerate(blocks):
            try:
                items.append(parse_seed_text(block.lstrip("=\n"), dialog_id=f"{path.stem}-{i}"))
            except SeedFormatError:
                if cfg.strict:
                    raise
                logger.warning("%s: block %d does not parse; skipped", path, i)
        return items, str(path)
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorefError(f"{path}: not a UTF-8 JSON file ({e}). Fix: write a JSON list of dialogues") from None


def prepare_coref_data(cfg: CorefDataConfig, out: dict[str, str], report_path: str) -> dict:
    """Validate, split (train / val / test, disjoint by content) and write the splits and the data report."""
    items, source = read_source(cfg)
    dialogues, report = validate_dialogues(items, strict=cfg.strict, source=source)
    if not dialogues:
        raise CorefError(f"{source}: no valid dialogue left (dropped: {report.dropped_by_reason}). Fix the data")
    splits = split_dialogues(dialogues, test_share=cfg.test_share, val_share_of_train=cfg.val_share_of_train,
                             seed=cfg.seed)
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
