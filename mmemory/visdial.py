"""Read and validate VisDial v1.0 JSON (real or toy) through one code path.

Schema (https://visualdialog.org/data):
    {"version", "split", "data": {"questions": [str], "answers": [str],
     "dialogs": [{"image_id", "caption", "dialog": [{"question", "answer", "answer_options", "gt_index"}]}]}}
Dense annotations (val): [{"image_id", "round_id", "gt_relevance": [float] * 100}]

`validate_visdial` never fills anything in. In strict mode the first problem raises `VisDialError`, whose
message names the file, the dialogue index and the fix; otherwise the dialogue is dropped and the problem is
recorded so that it can be counted in `data_report.json`. Every `Problem` carries a short stable `reason` label
(one of `REASONS`), which the report groups by, apart from its detailed message.

Images are found by the trailing digits of their file names (COCO `COCO_train2014_000000000009.jpg`, VisDial
`VisualDialog_val2018_000000185565.jpg`, toy `toy_train_000000000001.png`). An image argument is one folder, a
list of folders, or one root whose subfolders hold the images (the COCO layout: `root/train2014/`,
`root/val2014/`, ...): every folder is searched recursively. VisDial v1.0 train uses COCO train2014 *and* val2014
images, so give both folders, or their root.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Union

from tqdm import tqdm

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

ImageDirs = Union[str, Path, Iterable[Union[str, Path]]]

# The short, stable labels that `data_report.json` groups dropped items by (`Problem.reason`).
REASONS = (
    "dialog not an object", "image_id not an integer", "duplicate image_id", "caption not a string",
    "empty dialogue",
    "round not an object", "round missing question", "round missing answer", "round missing answer_options",
    "round missing gt_index", "index out of bounds", "bad answer_options", "wrong number of answer_options",
    "duplicate answer_options", "gt_index does not match answer",
    "missing image", "corrupt image", "conflicting image files",
    "image_id shared with another split", "image content shared with another split",
    "image, question and answer shared with another split",
    "bad dense annotation", "dense annotation for an unknown dialogue",
)


class VisDialError(ValueError):
    """A VisDial file that cannot be used as it is."""


@dataclass
class Problem:
    """One dropped item: `reason` is a short stable label from `REASONS`; `problem` is the detailed message."""

    file: str
    dialog_index: int | None
    image_id: Any
    problem: str
    reason: str

    def message(self) -> str:
        where = f"dialog {self.dialog_index} (image_id={self.image_id})" if self.dialog_index is not None else "file"
        return f"{self.file}: {where}: {self.problem}"


@dataclass
class VisDialSplit:
    """A parsed VisDial v1.0 split. `dialogs[i]["image_path"]` is set once images are resolved; then
    `image_hashes[image_id]` is the blake2b digest of that image file's bytes. `indices[i]` is the position of
    `dialogs[i]` in the file it was read from; `cut_ids` are the image ids that `max_dialogs` left unread."""

    path: str
    version: str
    split: str
    questions: list[str]
    answers: list[str]
    dialogs: list[dict]
    problems: list[Problem] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    image_hashes: dict[int, str] = field(default_factory=dict)
    cut_ids: set = field(default_factory=set)  # image ids of the dialogues that max_dialogs left out

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "split": self.split,
            "data": {"questions": self.questions, "answers": self.answers, "dialogs": self.dialogs},
        }

    def question(self, rnd: dict) -> str:
        return self.questions[rnd["question"]]

    def answer(self, rnd: dict) -> str:
        return self.answers[rnd["answer"]]

    def by_image_id(self) -> dict[int, dict]:
        return {d["image_id"]: d for d in self.dialogs}


def read_json(path: str | Path) -> Any:
    """Load a UTF-8 JSON file; a bad byte or a parse error names the file, where it is and the fix."""
    path = Path(path)
    if not path.exists():
        raise VisDialError(f"{path}: file not found. Check the path in config.yaml (data.visdial.*).")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        bad = raw[e.start:e.end].hex(" ")
        raise VisDialError(
            f"{path}: not valid UTF-8 at byte offset {e.start} (line {line}, column {column}: byte(s) 0x{bad}, "
            f"{e.reason}). JSON files must be UTF-8: re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) "
            "or re-download it."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise VisDialError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). "
            "Re-download or regenerate the file."
        ) from e


def _is_index(x: Any, n: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < n


def _check_round(rnd: Any, r: int, n_q: int, n_a: int, n_options: int | None,
                 require_answers: bool = True) -> tuple[str, str] | None:
    """Return (reason, detailed problem) for one round, or None. With `require_answers`, every round must have
    `answer`, `answer_options` and `gt_index` (VisDial v1.0 train and val do; only the official test file lacks
    them)."""
    if not isinstance(rnd, dict):
        return "round not an object", f"round {r + 1} is not an object"
    if "question" not in rnd:
        return "round missing question", f"round {r + 1} has no 'question'"
    if require_answers:
        for key in ("answer", "answer_options", "gt_index"):
            if key not in rnd:
                return f"round missing {key}", (f"round {r + 1} has no '{key}' (every round of a train, val or test "
                                                "split needs answer, answer_options and gt_index)")
    if not _is_index(rnd["question"], n_q):
        return "index out of bounds", (f"round {r + 1}: question index {rnd['question']!r} is out of bounds "
                                       f"(0..{n_q - 1})")
    if "answer" in rnd and not _is_index(rnd["answer"], n_a):
        return "index out of bounds", f"round {r + 1}: answer index {rnd['answer']!r} is out of bounds (0..{n_a - 1})"
    if "answer_options" in rnd:
        opts = rnd["answer_options"]
        if not isinstance(opts, list) or not opts:
            return "bad answer_options", f"round {r + 1}: answer_options must be a non-empty list"
        if n_options is not None and len(opts) != n_options:
            return "wrong number of answer_options", f"round {r + 1}: {len(opts)} answer_options, expected {n_options}"
        bad = [o for o in opts if not _is_index(o, n_a)]
        if bad:
            return "index out of bounds", (f"round {r + 1}: answer_options hold indices out of bounds "
                                           f"(0..{n_a - 1}): {bad[:3]}")
        if len(set(opts)) != len(opts):
            return "duplicate answer_options", f"round {r + 1}: answer_options contain duplicates"
        if "gt_index" in rnd:
            gt = rnd["gt_index"]
            if not _is_index(gt, len(opts)):
                return "index out of bounds", f"round {r + 1}: gt_index {gt!r} is out of bounds (0..{len(opts) - 1})"
            if "answer" in rnd and opts[gt] != rnd["answer"]:
                return "gt_index does not match answer", (f"round {r + 1}: answer_options[gt_index] ({opts[gt]}) "
                                                          f"differs from answer ({rnd['answer']})")
    return None


def image_dirs(dirs: ImageDirs) -> list[Path]:
    """The folders named by an `*_images` setting: one folder, or a list of them."""
    if isinstance(dirs, (str, Path)):
        return [Path(dirs)]
    out = [Path(d) for d in dirs]
    if not out:
        raise VisDialError("an empty list of image folders. Set data.visdial.*_images in config.yaml.")
    return out


def file_digest(path: str | Path) -> str:
    """blake2b digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ImageIndex(dict):
    """image_id -> file. `conflicts[image_id]` lists the files of an id found more than once with different
    bytes (byte-identical copies, e.g. the same picture in two folders, are fine and map to the first)."""

    def __init__(self, dirs: list[Path]):
        super().__init__()
        self.dirs = dirs
        self.conflicts: dict[int, list[Path]] = {}

    def where(self) -> str:
        return ", ".join(str(d) for d in self.dirs)


def index_images(dirs: ImageDirs) -> ImageIndex:
    """Map image_id -> file by the trailing digits of each file name, searching every folder recursively. A
    folder may be a COCO root (`train2014/`, `val2014/`, ... inside): its subfolders are all searched."""
    folders = image_dirs(dirs)
    index = ImageIndex(folders)
    for folder in folders:
        if not folder.is_dir():
            raise VisDialError(f"{folder}: image directory not found. Set data.visdial.*_images in config.yaml "
                               "(a folder, a list of folders, or a COCO root; see the README, Configuration).")
        n, per_sub = 0, Counter()
        for p in sorted(folder.rglob("*")):
            if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
                continue
            m = re.search(r"(\d+)$", p.stem)
            if not m:
                continue
            n += 1
            parts = p.relative_to(folder).parts
            per_sub[parts[0] if len(parts) > 1 else "."] += 1
            image_id = int(m.group(1))
            first = index.get(image_id)
            if first is None:
                index[image_id] = p
            elif first.resolve() != p.resolve() and not _same_bytes(first, p):
                index.conflicts.setdefault(image_id, [first]).append(p)
        if n == 0:
            raise VisDialError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) named by their image id. "
                               "Set data.visdial.*_images in config.yaml to the folder(s) holding the images.")
        logger.info("images under %s: %d (%s)", folder, n, ", ".join(f"{k}: {v}" for k, v in sorted(per_sub.items())))
    return index


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and file_digest(a) == file_digest(b)


def _image_problem(path: Path, data: bytes) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"image {path} is corrupt or unreadable ({type(e).__name__}: {e}); replace the file or drop it"
    return None


def validate_visdial(
    path: str | Path,
    image_dir: ImageDirs | None = None,
    strict: bool = True,
    n_options: int | None = 100,
    check_images: bool = True,
    max_dialogs: int | None = None,
    require_answers: bool = True,
) -> VisDialSplit:
    """Parse and validate one VisDial v1.0 file. Valid dialogues are kept, with `image_path` set when
    `image_dir` (a folder, a list of folders or a COCO root) is given; each image file is then read once, hashed
    (`image_hashes`) and, with `check_images`, decoded. In strict mode the first problem raises; otherwise it is
    recorded in `.problems`. `require_answers=False` accepts rounds without answer/answer_options/gt_index."""
    path = Path(path)
    raw = read_json(path)
    name = str(path)

    def fail_file(msg: str):
        raise VisDialError(f"{name}: {msg}")

    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        fail_file("top level must be an object with a 'data' object (VisDial v1.0 schema)")
    data = raw["data"]
    for key in ("questions", "answers", "dialogs"):
        if not isinstance(data.get(key), list):
            fail_file(f"data.{key} is missing or not a list (VisDial v1.0 schema)")
    questions, answers, dialogs = data["questions"], data["answers"], data["dialogs"]
    for key, pool in (("questions", questions), ("answers", answers)):
        bad = next((i for i, s in enumerate(pool) if not isinstance(s, str)), None)
        if bad is not None:
            fail_file(f"data.{key}[{bad}] is not a string")

    images = index_images(image_dir) if image_dir is not None else None
    split = VisDialSplit(name, str(raw.get("version", "1.0")), str(raw.get("split", "")), questions, answers, [])
    seen: set = set()
    todo = dialogs[:max_dialogs] if max_dialogs else dialogs
    split.cut_ids = {d.get("image_id") for d in dialogs[len(todo):]
                     if isinstance(d, dict) and isinstance(d.get("image_id"), int)}
    for i, d in enumerate(tqdm(todo, desc=f"validate {path.name}", unit="dialog", mininterval=2.0)):
        image_id = d.get("image_id") if isinstance(d, dict) else None
        problem = None
        if not isinstance(d, dict):
            problem = "dialog not an object", "dialog entry is not an object"
        elif not isinstance(image_id, int) or isinstance(image_id, bool):
            problem = "image_id not an integer", f"image_id {image_id!r} is not an integer"
        elif image_id in seen:
            problem = "duplicate image_id", f"duplicate image_id {image_id}; each image may have one dialogue"
        elif not isinstance(d.get("caption", ""), str):
            problem = "caption not a string", "caption is not a string"
        elif not isinstance(d.get("dialog"), list) or not d["dialog"]:
            problem = "empty dialogue", "empty dialogue (no rounds)"
        else:
            for r, rnd in enumerate(d["dialog"]):
                problem = _check_round(rnd, r, len(questions), len(answers), n_options, require_answers)
                if problem:
                    break
        digest = None
        if problem is None and images is not None:
            img = images.get(image_id)
            if img is None:
                problem = "missing image", (
                    f"no image file for image_id {image_id} in {images.where()} (VisDial v1.0 train uses COCO "
                    "train2014 and val2014 images: list both folders, or their root, in data.visdial.*_images)")
            elif image_id in images.conflicts:
                files = " and ".join(str(p) for p in images.conflicts[image_id])
                problem = "conflicting image files", (
                    f"image_id {image_id} names different files: {files}; keep the right one (remove the other, or "
                    "list only the right folder in data.visdial.*_images)")
            else:
                try:
                    blob = img.read_bytes()
                except OSError as e:
                    problem = "corrupt image", f"image {img} cannot be read ({e}); replace the file or drop it"
                else:
                    digest = hashlib.blake2b(blob, digest_size=20).hexdigest()
                    if check_images:
                        msg = _image_problem(img, blob)
                        problem = ("corrupt image", msg) if msg else None
            if problem is None:
                d = {**d, "image_path": str(img)}
        if isinstance(image_id, int):
            seen.add(image_id)
        if problem is not None:
            p = Problem(name, i, image_id, problem[1], problem[0])
            if strict:
                raise VisDialError(
                    p.message() + ". Fix or remove this dialogue, or set data.strict: false to drop and count it."
                )
            logger.warning("dropping %s", p.message())
            split.problems.append(p)
            continue
        split.dialogs.append(d)
        split.indices.append(i)
        if digest is not None:
            split.image_hashes[image_id] = digest
    return split


def load_visdial(path: str | Path) -> VisDialSplit:
    """Load a VisDial file written by prepare_data (dialogues carry `image_path`); any problem raises. Rounds
    without answers are accepted here (reference files for scoring need them; the scorer checks)."""
    return validate_visdial(path, image_dir=None, strict=True, n_options=None, check_images=False,
                            require_answers=False)


def validate_dense(path: str | Path, split: VisDialSplit, strict: bool = True) -> tuple[list[dict], list[Problem]]:
    """Validate dense annotations against a validated split; returns (kept entries, problems). Entries of
    dialogues that `max_dialogs` left unread are skipped, not counted as problems."""
    raw = read_json(path)
    name = str(path)
    if not isinstance(raw, list):
        raise VisDialError(f"{name}: dense annotations must be a list of {{image_id, round_id, gt_relevance}}")
    dialogs = split.by_image_id()
    kept, problems, n_cut = [], [], 0
    for i, a in enumerate(raw):
        problem = None
        iid = a.get("image_id") if isinstance(a, dict) else None
        if isinstance(iid, int) and iid in split.cut_ids and iid not in dialogs:
            n_cut += 1
            continue
        if not isinstance(a, dict) or not {"image_id", "round_id", "gt_relevance"} <= set(a):
            problem = "bad dense annotation", "entry needs image_id, round_id and gt_relevance"
        elif not isinstance(a["image_id"], int) or a["image_id"] not in dialogs:
            problem = ("dense annotation for an unknown dialogue",
                       f"image_id {a['image_id']} is not a (valid) dialogue of {split.path}")
        else:
            n_rounds = len(dialogs[a["image_id"]]["dialog"])
            rel = a["gt_relevance"]
            n_opt = len(dialogs[a["image_id"]]["dialog"][0].get("answer_options", []))
            if not isinstance(a["round_id"], int) or not 1 <= a["round_id"] <= n_rounds:
                problem = "bad dense annotation", (f"round_id {a['round_id']!r} is outside 1..{n_rounds} "
                                                   "(round_id is 1-based)")
            elif not isinstance(rel, list) or len(rel) != n_opt:
                problem = "bad dense annotation", f"gt_relevance must list {n_opt} floats, one per answer option"
            elif not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in rel):
                problem = "bad dense annotation", "gt_relevance values must be numbers in [0, 1]"
        if problem is not None:
            p = Problem(name, i, a.get("image_id") if isinstance(a, dict) else None, problem[1], problem[0])
            if strict:
                raise VisDialError(p.message().replace("dialog ", "annotation ") + ". Fix or remove the entry.")
            problems.append(p)
            continue
        kept.append(a)
    if n_cut:
        logger.info("%s: skipped %d dense annotations of dialogues beyond max_dialogs", name, n_cut)
    return kept, problems
