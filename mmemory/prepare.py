"""`prepare_data`: validate VisDial v1.0 (real or toy), make three content-disjoint splits, and write them with
`data_report.json` and `metrics.json`.

Splits. Real VisDial v1.0's official test file has no answers, so our **test** split is the official v1.0 **val**
file (with its dense annotations). Our **val** split is a given file (the toy data has one) or, without one,
`val_from_train` dialogues carved out of train by a seeded shuffle. Val chooses settings; test reports.

Disjoint by content, not only by ids: no image id, no byte-identical image file and no (image content, question,
answer) triple may appear in two splits. In strict mode a violation raises `VisDialError` naming both
dialogues and files; otherwise the later split's dialogue (train, then val, then test) is dropped and counted.
"""
from __future__ import annotations

import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field, replace

from mmemory.config import StrictConfig
from mmemory.io import atomic_write_json
from mmemory.visdial import ImageDirs, Problem, VisDialError, VisDialSplit, validate_dense, validate_visdial

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
OUT_KEYS = ("train", "val", "test", "val_dense", "test_dense", "report", "metrics")


@dataclass
class DataConfig(StrictConfig):
    """config data (its scalar keys; data.toy and data.visdial are their own sections). Defaults: config.yaml's."""

    SECTION = "data"

    source: str = "toy"  # toy: the workflow renders toy VisDial | visdial: the user's files (data.visdial)
    strict: bool = True  # stop at the first bad item (false: drop it and count it in data_report.json)
    n_options: int = 100  # answer options per round (VisDial v1.0: 100)
    max_dialogs: int | None = None  # keep at most this many dialogues per split (None: all)
    check_images: bool = True  # open every image once to catch corrupt files


@dataclass
class VisDialConfig(StrictConfig):
    """config data.visdial: the user's VisDial v1.0 files (read when data.source is visdial)."""

    SECTION = "data.visdial"

    train_json: str = "data/visdial/visdial_1.0_train.json"  # VisDial v1.0 train dialogues
    train_images: str | list[str] = field(  # folder(s) or a COCO root: v1.0 train uses COCO train2014 AND val2014
        default_factory=lambda: ["data/images/train2014", "data/images/val2014"])
    val_json: str | None = None  # a val file of your own (None: carve val_from_train dialogues out of train)
    val_images: str | list[str] | None = None  # its image folder(s)
    val_dense: str | None = None  # its dense annotations (None: no NDCG on val)
    val_from_train: int | None = 2000  # dialogues held out of train as val (seeded), when val_json is None
    test_json: str = "data/visdial/visdial_1.0_val.json"  # the official v1.0 val file is our test split
    test_images: str | list[str] = "data/images/VisualDialog_val2018"  # VisDial val2018 images
    test_dense: str | None = "data/visdial/visdial_1.0_val_dense_annotations.json"  # its dense relevance


FIX = ("the splits must be disjoint by content (README, Data contracts): remove one of the two dialogues, or set "
       "data.strict: false to drop the later split's dialogue and count it")


def _subset(split: VisDialSplit, keep: list[int], name: str | None = None) -> VisDialSplit:
    """A copy of `split` holding only its dialogues at positions `keep` (in that order)."""
    dialogs = [split.dialogs[k] for k in keep]
    ids = {d["image_id"] for d in dialogs}
    return replace(split, split=name or split.split, dialogs=dialogs, indices=[split.indices[k] for k in keep],
                   problems=list(split.problems) if name is None else [],
                   image_hashes={i: h for i, h in split.image_hashes.items() if i in ids})


def carve_val(train: VisDialSplit, n: int, seed: int = 0) -> tuple[VisDialSplit, VisDialSplit]:
    """Split `n` dialogues off train as val, by a seeded shuffle of image ids. Dialogues whose images are
    byte-identical move together, so the carved val never shares an image with what is left of train."""
    if not isinstance(n, int) or isinstance(n, bool) or not 0 < n < len(train.dialogs):
        raise VisDialError(f"data.visdial.val_from_train must be an integer in 1..{len(train.dialogs) - 1} "
                           f"(train has {len(train.dialogs)} valid dialogues); got {n!r}")
    groups: dict = {}
    for k, d in enumerate(train.dialogs):
        key = train.image_hashes.get(d["image_id"], ("image_id", d["image_id"]))
        groups.setdefault(key, []).append(k)
    order = sorted(groups.values(), key=lambda g: min(train.dialogs[k]["image_id"] for k in g))
    random.Random(seed).shuffle(order)
    chosen: list[int] = []
    for g in order:
        if len(chosen) + len(g) <= n:
            chosen += g
        if len(chosen) == n:
            break
    if len(chosen) < n:
        logger.warning("val_from_train: carved %d dialogues, not %d (byte-identical images move together)",
                       len(chosen), n)
    chosen_set = set(chosen)
    rest = [k for k in range(len(train.dialogs)) if k not in chosen_set]
    return _subset(train, rest), _subset(train, sorted(chosen), name="val")


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _where(split_name: str, split: VisDialSplit, k: int) -> str:
    d = split.dialogs[k]
    img = f", image {d['image_path']}" if "image_path" in d else ""
    return f"{split_name} split ({split.path}) dialog {split.indices[k]} (image_id={d['image_id']}{img})"


def enforce_disjoint(splits: dict[str, VisDialSplit], strict: bool = True) -> tuple[dict[str, VisDialSplit],
                                                                                     dict[str, list[Problem]]]:
    """Check that no image id, identical image file or (image content, question, answer) triple crosses the
    splits (in their order: train, val, test). Returns the splits with each later split's offending dialogues
    dropped, and those problems per split; in strict mode the first violation raises."""
    seen_id: dict = {}
    seen_image: dict = {}
    seen_qa: dict = {}
    kept_splits, problems = {}, {}
    for name, split in splits.items():
        keep, found = [], []
        mine_id, mine_image, mine_qa = {}, {}, {}  # this split's content: checked against earlier splits only
        for k, d in enumerate(split.dialogs):
            iid = d["image_id"]
            content = split.image_hashes.get(iid, ("image_id", iid))
            triples = [(content, _norm(split.question(r)), _norm(split.answer(r))) for r in d["dialog"]]
            clash = None
            t = next((t for t in triples if t in seen_qa), None)
            if iid in seen_id:
                clash = "image_id shared with another split", f"image_id {iid} is also", seen_id[iid]
            elif t is not None:  # the same picture with the same question and answer: memorisable
                clash = ("image, question and answer shared with another split",
                         f"its image is byte-identical to, and its round {triples.index(t) + 1} (question {t[1]!r}, "
                         f"answer {t[2]!r}) repeats a round of,", seen_qa[t])
            elif iid in split.image_hashes and content in seen_image:
                clash = ("image content shared with another split", "its image is byte-identical to the image of",
                         seen_image[content])
            if clash is None:
                keep.append(k)
                where = (name, split, k)
                mine_id.setdefault(iid, where)
                mine_image.setdefault(content, where)
                for t in triples:
                    mine_qa.setdefault(t, where)
                continue
            reason, what, (other_name, other, ok) = clash
            detail = f"{what} {_where(other_name, other, ok)}"
            p = Problem(split.path, split.indices[k], iid, detail, reason)
            if strict:
                raise VisDialError(f"{_where(name, split, k)}: {detail}; {FIX}.")
            logger.warning("dropping %s: %s", _where(name, split, k), detail)
            found.append(p)
        kept_splits[name] = _subset(split, keep)
        problems[name] = found
        for seen, mine in ((seen_id, mine_id), (seen_image, mine_image), (seen_qa, mine_qa)):
            for key, where in mine.items():
                seen.setdefault(key, where)
    return kept_splits, problems


def prepare_data(train_json: str, train_images: ImageDirs | None, test_json: str, test_images: ImageDirs | None,
                 out: dict, *, val_json: str | None = None, val_images: ImageDirs | None = None,
                 test_dense: str | None = None, val_dense: str | None = None, val_from_train: int | None = None,
                 strict: bool = DataConfig.strict, n_options: int = DataConfig.n_options,
                 max_dialogs: int | None = DataConfig.max_dialogs, check_images: bool = DataConfig.check_images,
                 seed: int = 0) -> dict:
    """Validate train, val and test; make them disjoint by content; write each split (dialogues with
    `image_path`), the val and test dense lists (empty when none is given), `data_report.json` (every dropped
    item with its reason) and `metrics.json`. `out` maps each of `OUT_KEYS` to a path. An `*_images` argument
    is a folder, a list of folders or a COCO root. Without `val_json`, val is `val_from_train` dialogues carved
    out of train (seeded by `seed`); with `val_json`, `val_from_train` is not used. Returns the metrics."""
    missing = [k for k in OUT_KEYS if k not in out]
    if missing:
        raise ValueError(f"prepare_data: out lacks {missing} (needs {list(OUT_KEYS)})")
    if val_json is None:
        if val_from_train is None:
            raise VisDialError("no val split: set data.visdial.val_json, or data.visdial.val_from_train (how many "
                               "train dialogues to carve out as val)")
        if val_dense:
            raise VisDialError("data.visdial.val_dense is set but val_json is not: dense annotations belong to a "
                               "val file, not to dialogues carved out of train")
    elif val_from_train is not None:
        logger.info("val split: %s (val_from_train=%s is not used: a val file is given)", val_json, val_from_train)

    def load(name, path, images):
        logger.info("validating %s split: %s (images: %s, strict=%s)", name, path, images, strict)
        return validate_visdial(path, images, strict=strict, n_options=n_options, max_dialogs=max_dialogs,
                                check_images=check_images)

    splits: dict[str, VisDialSplit] = {"train": load("train", train_json, train_images)}
    if val_json is not None:
        splits["val"] = load("val", val_json, val_images)
    else:
        splits["train"], splits["val"] = carve_val(splits["train"], val_from_train, seed)
        logger.info("val: %d dialogues carved out of train (seed %d)", len(splits["val"].dialogs), seed)
    splits["test"] = load("test", test_json, test_images)
    file_problems = {name: list(s.problems) for name, s in splits.items()}

    splits, overlap = enforce_disjoint(splits, strict=strict)

    dense, dense_problems = {}, {}
    for name, path in (("val", val_dense), ("test", test_dense)):
        dense[name], dense_problems[name] = validate_dense(path, splits[name], strict=strict) if path else ([], [])

    for name in SPLITS:
        atomic_write_json(out[name], splits[name].to_json())
    atomic_write_json(out["val_dense"], dense["val"])
    atomic_write_json(out["test_dense"], dense["test"])

    items = ([(n, p) for n in SPLITS for p in file_problems[n] + overlap[n]]
             + [(f"{n}_dense", p) for n in ("val", "test") for p in dense_problems[n]])
    n_overlap = sum(len(v) for v in overlap.values())
    report = {
        "strict": strict,
        "val_source": "val_json" if val_json is not None else f"val_from_train ({val_from_train}, seed {seed})",
        "kept": {n: len(splits[n].dialogs) for n in SPLITS} | {f"{n}_dense": len(dense[n]) for n in ("val", "test")},
        "dropped": ({n: len(file_problems[n]) + len(overlap[n]) for n in SPLITS}
                    | {f"{n}_dense": len(dense_problems[n]) for n in ("val", "test")}),
        "content_overlap": n_overlap,
        "reasons": dict(Counter(p.reason for _, p in items).most_common()),
        "items": [{"split": n, **p.__dict__} for n, p in items],
    }
    atomic_write_json(out["report"], report, indent=2)
    metrics = {
        "train_dialogs": len(splits["train"].dialogs),
        "val_dialogs": len(splits["val"].dialogs),
        "test_dialogs": len(splits["test"].dialogs),
        "val_dense_annotations": len(dense["val"]),
        "test_dense_annotations": len(dense["test"]),
        "val_from_train": val_from_train if val_json is None else 0,
        "rounds_per_dialog": max((len(d["dialog"]) for d in splits["train"].dialogs), default=0),
        "dropped_items": len(items),
        "content_overlap": n_overlap,
    }
    atomic_write_json(out["metrics"], metrics, indent=2)
    logger.info("prepared data: %s; dropped %d items (%s)", metrics, len(items), report["reasons"])
    return metrics
