"""`prepare_data`: validate VisDial v1.0 (real or toy) and write normalized splits plus `data_report.json`."""
from __future__ import annotations

import logging
from collections import Counter

from mmemory.io import atomic_write_json
from mmemory.visdial import validate_dense, validate_visdial

logger = logging.getLogger(__name__)


def prepare_data(train_json: str, val_json: str, train_images: str, val_images: str, val_dense: str | None,
                 out_train: str, out_val: str, out_dense: str, out_report: str, out_metrics: str,
                 strict: bool = True, n_options: int = 100, max_dialogs: int | None = None,
                 check_images: bool = True) -> dict:
    """Validate both splits; keep valid dialogues (with `image_path`), list every dropped item with its reason."""
    splits = {}
    for name, path, images in (("train", train_json, train_images), ("val", val_json, val_images)):
        logger.info("validating %s split: %s (images: %s, strict=%s)", name, path, images, strict)
        splits[name] = validate_visdial(path, images, strict=strict, n_options=n_options, max_dialogs=max_dialogs,
                                        check_images=check_images)
    train_ids = {d["image_id"] for d in splits["train"].dialogs}
    overlap = train_ids & {d["image_id"] for d in splits["val"].dialogs}
    if overlap:
        raise ValueError(
            f"{train_json} and {val_json} share {len(overlap)} image ids (e.g. {sorted(overlap)[:3]}); "
            "train and val must be disjoint"
        )
    dense, dense_problems = ([], [])
    if val_dense:
        dense, dense_problems = validate_dense(val_dense, splits["val"], strict=strict)
    problems = [p for s in splits.values() for p in s.problems] + dense_problems
    for name, out in (("train", out_train), ("val", out_val)):
        atomic_write_json(out, splits[name].to_json())
    atomic_write_json(out_dense, dense)
    report = {
        "strict": strict,
        "kept": {k: len(s.dialogs) for k, s in splits.items()} | {"val_dense": len(dense)},
        "dropped": {k: len(s.problems) for k, s in splits.items()} | {"val_dense": len(dense_problems)},
        "reasons": dict(Counter(p.problem.split(" (")[0] for p in problems).most_common()),
        "items": [p.__dict__ for p in problems],
    }
    atomic_write_json(out_report, report, indent=2)
    metrics = {
        "train_dialogs": len(splits["train"].dialogs),
        "val_dialogs": len(splits["val"].dialogs),
        "val_dense_annotations": len(dense),
        "rounds_per_dialog": max((len(d["dialog"]) for d in splits["train"].dialogs), default=0),
        "dropped_items": len(problems),
    }
    atomic_write_json(out_metrics, metrics, indent=2)
    logger.info("prepared data: %s; dropped %d items", metrics, len(problems))
    return metrics
