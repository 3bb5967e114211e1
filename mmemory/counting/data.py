"""The counting stage's data: the Mall layout (real or toy), COCO person counts, content-disjoint splits.

Layout (the public Mall dataset as commonly repacked, and the toy frames of `mmemory.counting.toy`):

    <root>/labels.csv                 header `id,count`, one row per frame: 1,29
    <root>/frames/seq_000001.jpg      frame `id` is seq_{id:06d}.jpg; also found nested as <root>/frames/frames/

    items, report = read_mall("/data/mall")                 # strict: the first bad row or frame raises
    items, report = read_mall("/data/mall", strict=False)   # lenient: bad ones skipped, counted by reason
    splits = split_items(items, CountingDataConfig(split="mall"))   # Mall's first 800 frames train, the rest test

An item is `{"id": int, "count": int, "image": str}`. Bad input (`mmemory.counting.bad_input.REASONS`): a label row
whose id or count is not a non-negative integer of at most 9 ASCII digits, a row without two fields, a duplicate id,
two frame files for one id (`seq_000001.jpg` and `seq_1.jpg`, or `.jpg` and `.png`: which one the label describes is
unknown), a label with no frame, a 0-byte or corrupt image (PIL `verify()` and `load()`), a frame with no label, an
image file in the frames folder not named seq_<id>. Strict mode raises `CountingDataError` naming the file, the line
or frame(s), and the fix. Lenient mode skips the item and counts it under its reason in the report. Fatal in both
(no row can be read): a header other than `id,count`, a labels.csv that is not UTF-8 or not CSV. Messages quote at
most 200 characters of a bad row (`mmemory.io.excerpt`).

The report (`results/counting/data_report.json`): `{source, path, read, kept, skipped: {reason: n},
examples: {reason: [first few rows or files]}}`, where `read` counts every label row plus every frame no row
names, so `read == kept + sum(skipped)`; `mmemory.counting.stage.prepare_counting_data` adds `split` (sizes, the
split mode, the frames whose image bytes repeat another's), and refuses to write an empty train, val or test split, saying how many frames
the split settings need.
"""
from __future__ import annotations

import csv
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mmemory.config import ConfigError, StrictConfig, check_types
from mmemory.counting.bad_input import CountingDataError, DataReport, check_image, problem
from mmemory.counting.coco import coco_person_counts
from mmemory.io import excerpt, read_json_file, read_text_file
from mmemory.splits import empty_split_message

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
HEADER = ["id", "count"]
FRAME_NAME = re.compile(r"^seq_([0-9]+)\.(?:jpe?g|png)$", re.IGNORECASE)  # ASCII digits: never ٣ (Arabic 3)
MAX_DIGITS = 9  # an id or count longer than this is a typo or junk, not a frame id or a person count
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


@dataclass
class CountingDataConfig(StrictConfig):
    """Which frames, and how they are split: config counting.data."""

    SECTION = "counting.data"

    source: str = "toy"  # toy (the embedded default's synthetic frames) | mall (the Mall layout) | coco
    path: str | None = None  # mall: the root holding labels.csv and frames/; coco: an instances_*.json
    images: str | None = None  # coco: the folder holding the annotated images (e.g. COCO train2014/)
    iscrowd: str = "exclude"  # coco: images with an iscrowd person region: exclude (count unknown) | count (as 1)
    split: str = "random"  # random: seeded test_share test (the seed's 80:20) | mall: first train_size ids train
    test_share: float = 0.2  # split random: the share of frames in test
    val_share_of_train: float = 0.1  # val is carved from train (seeded), for choosing settings
    train_size: int = 800  # split mall: frames 1..train_size (by id order) train, the rest test (Mall's protocol)
    strict: bool = True  # true: the first bad row or frame is an error; false: skipped, counted in data_report.json
    verify_images: bool = False  # coco: decode every image (catches corrupt files; minutes on 80k images). Mall: always
    seed: int = 0  # the split's (and the toy frames') seed
    toy_n: int = 600  # source toy: frames drawn
    toy_max_count: int = 15  # source toy: counts drawn uniformly from 0..toy_max_count

    def __post_init__(self):
        check_types(self)
        if self.source not in ("toy", "mall", "coco"):
            raise ConfigError(f"config {self.SECTION}: source must be toy, mall or coco, got {self.source!r}")
        if self.split not in ("random", "mall"):
            raise ConfigError(f"config {self.SECTION}: split must be random or mall, got {self.split!r}")
        for name in ("test_share", "val_share_of_train"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"config {self.SECTION}: {name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.train_size < 1 or self.toy_n < 1 or self.toy_max_count < 0:
            raise ConfigError(f"config {self.SECTION}: train_size and toy_n must be >= 1 and toy_max_count >= 0")
        if self.source in ("mall", "coco") and not self.path:
            raise ConfigError(f"config {self.SECTION}: source {self.source} needs path (" +
                              ("the folder holding labels.csv and frames/" if self.source == "mall"
                               else "an instances_*.json annotation file") + ")")
        if self.iscrowd not in ("exclude", "count"):
            raise ConfigError(f"config {self.SECTION}: iscrowd must be exclude or count, got {self.iscrowd!r}")
        if self.source == "coco" and not self.images:
            raise ConfigError(f"config {self.SECTION}: source coco needs images (the folder of the COCO images)")


def _nonneg_int(s: str) -> int | None:
    """A non-negative integer of 1..MAX_DIGITS ASCII digits, else None (never `٣`, never 40 digits)."""
    s = s.strip()
    return int(s) if re.fullmatch(rf"[0-9]{{1,{MAX_DIGITS}}}", s) else None


def _what_int(s: str, of: str = "") -> str:
    """Why `s` is not a usable id or count, for a message (`of`: e.g. "for id 2 ", after the quoted value)."""
    s = s.strip()
    if re.fullmatch(r"[0-9]+", s):
        return f"{excerpt(s, 40)} {of}has {len(s)} digits (at most {MAX_DIGITS})"
    if s and all(c.isdigit() for c in s):
        return f"{excerpt(s, 40)} {of}is not written in ASCII digits 0-9"
    return f"{excerpt(s, 40)} {of}is not a non-negative integer"


def find_frames_dir(root: str | Path) -> Path:
    """`<root>/frames`, or `<root>/frames/frames` when the frames are nested one level deeper."""
    root = Path(root)
    outer, inner = root / "frames", root / "frames" / "frames"

    def has_frames(d: Path) -> bool:
        return d.is_dir() and any(FRAME_NAME.match(p.name) for p in d.iterdir())

    if has_frames(outer):
        return outer
    if has_frames(inner):
        return inner
    if outer.is_dir():
        return inner if inner.is_dir() else outer  # a folder without frames: every label is then reported
    raise CountingDataError(f"{root}: no frames folder (looked for {outer} and {inner}). Fix: point "
                            f"counting.data.path at the folder that holds labels.csv and frames/seq_000001.jpg ...")


def read_mall(root: str | Path, strict: bool = True) -> tuple[list[dict], DataReport]:
    """Read the Mall layout under `root` (both nestings): items `{id, count, image}` in id order, and the report."""
    root = Path(root)
    labels = root / "labels.csv"
    if not labels.is_file():
        raise CountingDataError(f"{root}: no labels.csv. Fix: point counting.data.path at the folder holding "
                                f"labels.csv (header id,count) and frames/")
    frames_dir = find_frames_dir(root)
    report = DataReport("mall", str(root))

    text = read_text_file(labels, CountingDataError)  # utf-8-sig: a spreadsheet's BOM is not a header
    rows: list[list[str] | None] = []  # one per physical line; None: a line csv cannot parse (a huge field, ...)
    for raw in text.split("\n"):
        try:
            rows.append(next(csv.reader([raw.rstrip("\r")]), []))
        except csv.Error:
            rows.append(None)
    header = [h.strip() for h in rows[0]] if rows and rows[0] is not None else []
    if header != HEADER:
        shown = excerpt(text.split("\n", 1)[0]) if text.strip() else "(empty file)"
        raise CountingDataError(f"{labels}:1: the header is {shown}, not id,count. "
                                f"Fix: make the first line `id,count` (the frame id, then its person count)")

    by_id: dict[int, tuple[int, int]] = {}  # id -> (count, line)
    named: set[int] = set()  # ids that some row names, good or bad
    for line, row in enumerate(rows[1:], start=2):
        if row is not None and (not row or all(not c.strip() for c in row)):
            continue  # a blank line (e.g. the file's end) is not a row
        report.read += 1
        where = f"{labels}:{line}"
        if row is None:
            raw = text.split("\n")[line - 1]
            if (frame_id := _nonneg_int(raw.split(",", 1)[0])) is not None:
                named.add(frame_id)  # its frame is this row's item, not also "with no label"
            problem(report, strict, "malformed row", where, f"not a CSV row: {excerpt(raw)}", f"line {line}")
            continue
        frame_id = _nonneg_int(row[0])
        if frame_id is not None:  # one bad row is one skipped item: its frame is not also "with no label"
            named.add(frame_id)
        if len(row) != 2:
            problem(report, strict, "malformed row", where, f"{len(row)} fields {excerpt(row)}, not id,count",
                     f"line {line}")
            continue
        count = _nonneg_int(row[1])
        if frame_id is None:
            problem(report, strict, "bad id", where, f"id {_what_int(row[0])}", f"line {line}")
            continue
        if count is None:
            problem(report, strict, "bad count", where, f"count {_what_int(row[1], f'for id {frame_id} ')}",
                     f"line {line} (id {frame_id})")
            continue
        if frame_id in by_id:
            problem(report, strict, "duplicate id", where, f"id {frame_id} already has a row at line "
                     f"{by_id[frame_id][1]}", f"line {line} (id {frame_id})")
            continue
        by_id[frame_id] = (count, line)

    frames: dict[int, Path] = {}
    ambiguous: dict[int, list[Path]] = {}  # id -> every file naming it, when more than one does
    for p in sorted(frames_dir.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        m = FRAME_NAME.match(p.name)
        if m is None or len(m.group(1).lstrip("0")) > MAX_DIGITS:
            if p.suffix.lower() in IMAGE_SUFFIXES:
                report.read += 1
                problem(report, strict, "frame name not seq_<id>", str(p), "an image not named seq_<id>.jpg",
                         p.name)
            continue
        frame_id = int(m.group(1))
        if frame_id in frames or frame_id in ambiguous:
            files = ambiguous.setdefault(frame_id, [frames.pop(frame_id)] if frame_id in frames else [])
            files.append(p)
            if strict:  # never pick one: the label would silently describe another frame's image
                line = f" (labels.csv line {by_id[frame_id][1]})" if frame_id in by_id else ""
                problem(report, strict, "two frames for one id", str(frames_dir), f"{files[0].name} and {p.name} "
                         f"both name frame id {frame_id}{line}", "")
            continue
        frames[frame_id] = p
    for frame_id, files in sorted(ambiguous.items()):
        # lenient: the id's good row, or its unlabelled frames, is one item dropped (a bad row is already counted)
        if frame_id in by_id or frame_id not in named:
            report.read += frame_id not in named
            report.skip("two frames for one id", f"id {frame_id}: " + " and ".join(f.name for f in files))
        named.add(frame_id)
        by_id.pop(frame_id, None)

    items = []
    for frame_id in sorted(by_id):
        count, line = by_id[frame_id]
        path = frames.get(frame_id)
        if path is None:
            problem(report, strict, "label with no frame", f"{labels}:{line}",
                     f"id {frame_id} has no frame {frames_dir / f'seq_{frame_id:06d}.jpg'}", f"id {frame_id}")
            continue
        bad = check_image(path)
        if bad is not None:
            problem(report, strict, bad, str(path), f"the frame of id {frame_id} (labels.csv line {line}) is "
                     + ("0 bytes" if bad == "empty image" else "not a readable image"), path.name)
            continue
        items.append({"id": frame_id, "count": count, "image": str(path)})
    for frame_id in sorted(set(frames) - named):
        report.read += 1
        problem(report, strict, "frame with no label", str(frames[frame_id]), f"no row for id {frame_id} in "
                 f"{labels}", frames[frame_id].name)
    report.kept = len(items)
    if report.skipped:
        logger.warning("%s: skipped %d of %d: %s", root, sum(report.skipped.values()), report.read,
                       dict(report.skipped))
    logger.info("%s: %d frames (frames folder %s)", root, len(items), frames_dir)
    return items, report


load_counting = read_mall  # the name toy.py's docstring gives the reader


# ---------------------------------------------------------------------------------------------------- splits

def _digest(item: dict) -> str:
    from mmemory.fingerprint import file_digest

    return file_digest(item["image"])


def split_items(items: list[dict], cfg: CountingDataConfig, stats: dict | None = None) -> dict[str, list[dict]]:
    """train/val/test, disjoint by id and by image bytes, deterministic by `cfg.seed`.

    split random: frames with identical bytes form one group, and groups are shuffled (seeded) into test
    (`test_share` of the frames), val (`val_share_of_train` of the rest) and train; a repeated image follows its
    first occurrence (counted as moved). split mall: by id order, the first `train_size` frames are the train pool
    and the rest test; a test frame whose bytes repeat a train-pool frame is dropped (the split is fixed by id, so
    it cannot move), and val is carved from the train pool by seeded groups. `stats` (when given) receives the sizes
    and the moved / dropped counts."""
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i, n in Counter(ids).items() if n > 1)
        raise CountingDataError(f"split_items: id {dup!r} appears twice; read the data with read_mall / "
                                "coco_person_counts, which refuse duplicate ids")
    digests = {it["id"]: _digest(it) for it in items}
    moved = dropped = 0

    def groups_of(pool: list[dict]) -> list[list[dict]]:
        groups: dict[str, list[dict]] = {}
        for it in pool:
            groups.setdefault(digests[it["id"]], []).append(it)
        return list(groups.values())

    def carve(pool_groups: list[list[dict]], share: float, seed_tag: str) -> tuple[list[dict], list[dict]]:
        """(carved, rest): seeded groups until `share` of the pool's frames are carved out."""
        order = list(pool_groups)
        random.Random(f"{cfg.seed}|{seed_tag}").shuffle(order)
        n_take = round(sum(len(g) for g in order) * share)
        carved, rest = [], []
        for g in order:
            (carved if len(carved) < n_take else rest).extend(g)
        return sorted(carved, key=lambda it: it["id"]), sorted(rest, key=lambda it: it["id"])

    if cfg.split == "random":
        groups = groups_of(items)
        moved = sum(len(g) - 1 for g in groups)
        test, pool = carve(groups, cfg.test_share, "test")
    else:
        ordered = sorted(items, key=lambda it: it["id"])
        if len(ordered) <= cfg.train_size:
            raise CountingDataError(f"split mall: only {len(ordered)} frames, so none is left for test after the "
                                    f"first {cfg.train_size}. Fix: set counting.data.split: random, or a smaller "
                                    f"train_size")
        pool, test_pool = ordered[:cfg.train_size], ordered[cfg.train_size:]
        seen = {digests[it["id"]] for it in pool}
        test = [it for it in test_pool if digests[it["id"]] not in seen]
        dropped = len(test_pool) - len(test)
        moved = sum(len(g) - 1 for g in groups_of(pool)) + sum(len(g) - 1 for g in groups_of(test))
    val, train = carve(groups_of(pool), cfg.val_share_of_train, "val")
    out = {"train": train, "val": val, "test": test}

    where: dict[str, str] = {}
    for name, split in out.items():
        for it in split:
            d = digests[it["id"]]
            if where.setdefault(d, name) != name:
                raise AssertionError(f"split_items: image {it['image']} (id {it['id']}) is in {where[d]} and {name}")
    if moved or dropped:
        logger.warning("split %s: %d frames repeat another frame's bytes (kept in its split), %d dropped from test",
                       cfg.split, moved, dropped)
    if stats is not None:
        stats.update({"mode": cfg.split, "seed": cfg.seed, **{k: len(v) for k, v in out.items()},
                      "repeated_images_kept_together": moved, "repeated_images_dropped_from_test": dropped})
    return out


# -------------------------------------------------------------------------------------------------- the stage

def read_source(cfg: CountingDataConfig, toy_root: str | Path | None = None) -> tuple[list[dict], DataReport]:
    """The items and report of `cfg.source` (toy frames are drawn under `toy_root` first)."""
    if cfg.source == "toy":
        from mmemory.counting.toy import make_toy_counting

        if toy_root is None:
            raise CountingDataError("source toy: give toy_root, the folder to draw the toy frames in")
        make_toy_counting(toy_root, n=cfg.toy_n, seed=cfg.seed, max_count=cfg.toy_max_count)
        items, report = read_mall(toy_root, strict=cfg.strict)
        report.source = "toy"
        return items, report
    if cfg.source == "mall":
        return read_mall(cfg.path, strict=cfg.strict)
    return coco_person_counts(cfg.path, cfg.images, iscrowd=cfg.iscrowd, strict=cfg.strict,
                              verify_images=cfg.verify_images)


def check_split_sizes(sizes: dict[str, int], n_items: int, source: str, cfg: CountingDataConfig) -> None:
    """Refuse an empty train, val or test split (`mmemory.splits`), naming the sizes and what the settings need."""
    how = None
    if cfg.split == "mall":
        how = (f"split mall puts the first train_size ({cfg.train_size}) frames in the train pool and val takes "
               f"val_share_of_train ({cfg.val_share_of_train}) of it")
    msg = empty_split_message(sizes, n_items, source, cfg.test_share, cfg.val_share_of_train,
                              "images" if cfg.source == "coco" else "frames", CountingDataConfig.SECTION, how)
    if msg:
        raise CountingDataError(msg)


def load_split(path: str | Path) -> list[dict]:
    """Read one split written by `mmemory.counting.stage.prepare_counting_data`, checking every item's fields."""
    path = Path(path)
    items = read_json_file(path, CountingDataError, "rerun the counting_data rule")
    if not isinstance(items, list):
        raise CountingDataError(f"{path}: holds a {type(items).__name__}, not a list of {{id, count, image}}")
    for k, it in enumerate(items):
        ok = (isinstance(it, dict) and set(it) == {"id", "count", "image"} and isinstance(it["id"], int)
              and isinstance(it["count"], int) and not isinstance(it["count"], bool) and it["count"] >= 0
              and isinstance(it["image"], str) and it["image"] != "")
        if not ok:
            raise CountingDataError(f"{path}: item {k} is {excerpt(it)}, not {{id: int, count: non-negative int, "
                                    f"image: path}}. Fix: rerun the counting_data rule")
    return items
