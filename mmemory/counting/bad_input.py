"""What the counting data readers (the Mall layout in `mmemory.counting.data`, COCO in `mmemory.counting.coco`)
share about bad input: the reasons an item is skipped and their fixes (`REASONS`, `FIXES`), the report of what a reader
kept and skipped (`DataReport`, the content of data_report.json), `problem` (strict: raise `CountingDataError`;
lenient: count the item under its reason) and `check_image`."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mmemory.io import InputError

N_EXAMPLES = 5  # examples kept per skip reason in the report

# The short, stable labels the report groups skipped items by (in the order they are checked).
REASONS = (
    "malformed row",
    "bad id",
    "bad count",
    "duplicate id",
    "two frames for one id",
    "label with no frame",
    "empty image",
    "corrupt image",
    "frame with no label",
    "frame name not seq_<id>",
    "missing image",  # COCO: an annotated image whose file is absent
    "duplicate image id",  # COCO: two image records with one id (pycocotools would keep one silently)
    "file name outside the image folder",  # COCO: an absolute file_name or one with `..` (e.g. ../../etc/hostname)
    "person crowd region",  # COCO, iscrowd exclude: an image whose person count is unknown (not bad input)
)

FIXES = {
    "malformed row": "write each row as two comma-separated fields, id,count",
    "bad id": "give the frame id as a non-negative integer (frame seq_{id:06d}.jpg)",
    "bad count": "give the person count as a non-negative integer (0, 1, 2, ...)",
    "duplicate id": "keep one row per frame id in labels.csv",
    "two frames for one id": ("keep one image file per frame id (seq_000001.jpg and seq_1.jpg, or seq_000001.jpg "
                              "and seq_000001.png, name the same id): delete or move the wrong one"),
    "label with no frame": "add the frame seq_{id:06d}.jpg to the frames folder, or delete its row",
    "empty image": "replace the 0-byte file with the real frame (re-extract or re-download it), or delete its row",
    "corrupt image": "replace the file with a readable JPEG/PNG frame, or delete its row",
    "frame with no label": "add a row `id,count` for the frame to labels.csv, or move the frame out of the folder",
    "frame name not seq_<id>": "rename the frame to seq_{id:06d}.jpg, or move it out of the frames folder",
    "missing image": "point counting.data.images at the folder holding the annotation file's images",
    "duplicate image id": "give every image record of the annotation file its own id (or restore the original file)",
    "file name outside the image folder": ("give file_name relative to counting.data.images, without `..` or a "
                                           "leading /"),
    "person crowd region": "nothing to fix: set counting.data.iscrowd: count to count each crowd region as 1",
}


class CountingDataError(InputError):
    """Counting data that cannot be used as it is; the message names the file, the row or frame, and the fix."""


@dataclass
class DataReport:
    """What a reader kept and skipped; `to_json()` is the content of data_report.json."""

    source: str
    path: str
    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def skip(self, reason: str, example: str) -> None:
        assert reason in FIXES, reason
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < N_EXAMPLES:
            ex.append(example)

    def to_json(self) -> dict:
        order = {r: k for k, r in enumerate(REASONS)}
        reasons = sorted(self.skipped, key=lambda r: order.get(r, len(order)))
        return {"source": self.source, "path": self.path, "read": self.read, "kept": self.kept,
                "skipped": {r: self.skipped[r] for r in reasons},
                "examples": {r: self.examples[r] for r in reasons}, **self.extra}


def problem(report: DataReport, strict: bool, reason: str, where: str, detail: str, example: str) -> None:
    """Raise (strict) or count (lenient) one bad row or frame."""
    if strict:
        raise CountingDataError(f"{where}: {detail}. Fix: {FIXES[reason]} (or set counting.data.strict: false to "
                                f"skip such items and count them in data_report.json)")
    report.skip(reason, example)


def check_image(path: Path) -> str | None:
    """None when `path` is a readable image; else the reason ("empty image" or "corrupt image")."""
    from PIL import Image

    try:
        if path.stat().st_size == 0:
            return "empty image"
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:  # verify() misses truncated pixel data; load() reads it all
            im.load()
    except Exception:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        return "corrupt image"
    return None
