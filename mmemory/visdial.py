"""Read and validate VisDial v1.0 JSON (real or toy) through one code path.

Schema (https://visualdialog.org/data):
    {"version", "split", "data": {"questions": [str], "answers": [str],
     "dialogs": [{"image_id", "caption", "dialog": [{"question", "answer", "answer_options", "gt_index"}]}]}}
Dense annotations (val): [{"image_id", "round_id", "gt_relevance": [float] * 100}]

`validate_visdial` never fills anything in. In strict mode the first problem raises `VisDialError`, whose
message names the file, the dialogue index and the fix; otherwise the dialogue is dropped and the problem is
recorded so that it can be counted in `data_report.json`.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class VisDialError(ValueError):
    """A VisDial file that cannot be used as it is."""


@dataclass
class Problem:
    """One dropped item and why."""

    file: str
    dialog_index: int | None
    image_id: Any
    problem: str

    def message(self) -> str:
        where = f"dialog {self.dialog_index} (image_id={self.image_id})" if self.dialog_index is not None else "file"
        return f"{self.file}: {where}: {self.problem}"


@dataclass
class VisDialSplit:
    """A parsed VisDial v1.0 split. `dialogs[i]["image_path"]` is set once images are resolved."""

    path: str
    version: str
    split: str
    questions: list[str]
    answers: list[str]
    dialogs: list[dict]
    problems: list[Problem] = field(default_factory=list)

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
    """Load a JSON file; a parse error names the file, line and column."""
    path = Path(path)
    if not path.exists():
        raise VisDialError(f"{path}: file not found. Check the path in config.yaml (data.visdial.*).")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise VisDialError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). "
            "Re-download or regenerate the file."
        ) from e


def _is_index(x: Any, n: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < n


def _check_round(rnd: Any, r: int, n_q: int, n_a: int, n_options: int | None) -> str | None:
    """Return a problem description for one round, or None."""
    if not isinstance(rnd, dict):
        return f"round {r + 1} is not an object"
    if "question" not in rnd:
        return f"round {r + 1} has no 'question'"
    if not _is_index(rnd["question"], n_q):
        return f"round {r + 1}: question index {rnd['question']!r} is out of bounds (0..{n_q - 1})"
    if "answer" in rnd and not _is_index(rnd["answer"], n_a):
        return f"round {r + 1}: answer index {rnd['answer']!r} is out of bounds (0..{n_a - 1})"
    if "answer_options" in rnd:
        opts = rnd["answer_options"]
        if not isinstance(opts, list) or not opts:
            return f"round {r + 1}: answer_options must be a non-empty list"
        if n_options is not None and len(opts) != n_options:
            return f"round {r + 1}: {len(opts)} answer_options, expected {n_options}"
        bad = [o for o in opts if not _is_index(o, n_a)]
        if bad:
            return f"round {r + 1}: answer_options hold indices out of bounds (0..{n_a - 1}): {bad[:3]}"
        if len(set(opts)) != len(opts):
            return f"round {r + 1}: answer_options contain duplicates"
        if "gt_index" in rnd:
            gt = rnd["gt_index"]
            if not _is_index(gt, len(opts)):
                return f"round {r + 1}: gt_index {gt!r} is out of bounds (0..{len(opts) - 1})"
            if "answer" in rnd and opts[gt] != rnd["answer"]:
                return f"round {r + 1}: answer_options[gt_index] ({opts[gt]}) differs from answer ({rnd['answer']})"
    return None


def index_images(image_dir: str | Path) -> dict[int, Path]:
    """Map image_id -> file by the trailing digits of each file name (COCO, VisDial val2018 and toy names)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise VisDialError(f"{image_dir}: image directory not found. Set data.visdial.*_images in config.yaml.")
    found: dict[int, Path] = {}
    for p in image_dir.rglob("*"):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            m = re.search(r"(\d+)$", p.stem)
            if m:
                found[int(m.group(1))] = p
    return found


def _image_problem(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        return f"image {path} is corrupt or unreadable ({type(e).__name__}: {e}); replace the file or drop it"
    return None


def validate_visdial(
    path: str | Path,
    image_dir: str | Path | None = None,
    strict: bool = True,
    n_options: int | None = 100,
    check_images: bool = True,
    max_dialogs: int | None = None,
) -> VisDialSplit:
    """Parse and validate one VisDial v1.0 file. Valid dialogues are kept, with `image_path` set when
    `image_dir` is given. In strict mode the first problem raises; otherwise it is recorded in `.problems`."""
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
    for i, d in enumerate(tqdm(todo, desc=f"validate {path.name}", unit="dialog", mininterval=2.0)):
        image_id = d.get("image_id") if isinstance(d, dict) else None
        problem = None
        if not isinstance(d, dict):
            problem = "dialog entry is not an object"
        elif not isinstance(image_id, int) or isinstance(image_id, bool):
            problem = f"image_id {image_id!r} is not an integer"
        elif image_id in seen:
            problem = f"duplicate image_id {image_id}; each image may have one dialogue"
        elif not isinstance(d.get("caption", ""), str):
            problem = "caption is not a string"
        elif not isinstance(d.get("dialog"), list) or not d["dialog"]:
            problem = "empty dialogue (no rounds)"
        else:
            for r, rnd in enumerate(d["dialog"]):
                problem = _check_round(rnd, r, len(questions), len(answers), n_options)
                if problem:
                    break
        if problem is None and images is not None:
            img = images.get(image_id)
            if img is None:
                problem = f"no image file for image_id {image_id} in {image_dir}"
            elif check_images:
                problem = _image_problem(img)
            if problem is None:
                d = {**d, "image_path": str(img)}
        if isinstance(image_id, int):
            seen.add(image_id)
        if problem is not None:
            p = Problem(name, i, image_id, problem)
            if strict:
                raise VisDialError(
                    p.message() + ". Fix or remove this dialogue, or set data.strict: false to drop and count it."
                )
            logger.warning("dropping %s", p.message())
            split.problems.append(p)
            continue
        split.dialogs.append(d)
    return split


def load_visdial(path: str | Path) -> VisDialSplit:
    """Load a VisDial file written by prepare_data (dialogues carry `image_path`); any problem raises."""
    return validate_visdial(path, image_dir=None, strict=True, n_options=None, check_images=False)


def validate_dense(path: str | Path, split: VisDialSplit, strict: bool = True) -> tuple[list[dict], list[Problem]]:
    """Validate val dense annotations against a validated split; returns (kept entries, problems)."""
    raw = read_json(path)
    name = str(path)
    if not isinstance(raw, list):
        raise VisDialError(f"{name}: dense annotations must be a list of {{image_id, round_id, gt_relevance}}")
    dialogs = split.by_image_id()
    kept, problems = [], []
    for i, a in enumerate(raw):
        problem = None
        if not isinstance(a, dict) or not {"image_id", "round_id", "gt_relevance"} <= set(a):
            problem = "entry needs image_id, round_id and gt_relevance"
        elif a["image_id"] not in dialogs:
            problem = f"image_id {a['image_id']} is not a (valid) dialogue of {split.path}"
        else:
            n_rounds = len(dialogs[a["image_id"]]["dialog"])
            rel = a["gt_relevance"]
            n_opt = len(dialogs[a["image_id"]]["dialog"][0].get("answer_options", []))
            if not isinstance(a["round_id"], int) or not 1 <= a["round_id"] <= n_rounds:
                problem = f"round_id {a['round_id']!r} is outside 1..{n_rounds} (round_id is 1-based)"
            elif not isinstance(rel, list) or len(rel) != n_opt:
                problem = f"gt_relevance must list {n_opt} floats, one per answer option"
            elif not all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in rel):
                problem = "gt_relevance values must be numbers in [0, 1]"
        if problem is not None:
            p = Problem(name, i, a.get("image_id") if isinstance(a, dict) else None, problem)
            if strict:
                raise VisDialError(p.message().replace("dialog ", "annotation ") + ". Fix or remove the entry.")
            problems.append(p)
            continue
        kept.append(a)
    return kept, problems
