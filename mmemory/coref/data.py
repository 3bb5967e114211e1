"""The coref stage's data: one schema, checked on load; the seed's text format; content-disjoint splits.

Schema (docs/coref.md): a JSON list of dialogues

    {"dialog_id": str | int,
     "turns": [{"speaker": str, "text": str} | {"speaker": str, "photo": {"photo_id", "caption", "objects": [str]}}],
     "choices": [{"label": str, "photo_id": str | int, "object": str, "text": str}] * 4,
     "answer": label,
     "rationale"?: str}

`validate_dialogues` never fills anything in. In strict mode the first bad item raises `CorefError`, whose message
names the source, the dialogue and the fix; otherwise the item is dropped and counted under one short, stable
reason (`REASONS`, checked in that order, one reason per dropped item), so a rule can write `data_report.json`.

`parse_seed_text` reads one example block in seed 002's format (utterances `A: "..."`, photo lines
`(사진 N: ...)` / `(photo N: ...)`, `선택지:` / `Choices:` then `A) ...` to `D) ...`, `정답: D) ...` /
`Answer: D) ...`, and an optional rationale) into a schema dict. Text is kept exactly as written (Korean included).
It refuses, naming the line: a control character (NUL, ...) anywhere, a label outside A-D, an answer line with no
choices block before it, and a second answer line or choices header after the answer (two blocks without a `=====`
line between them). A block it refuses is dropped in lenient mode and counted under `PARSE_REASON`. Messages quote at
most 200 characters of a line (`mmemory.io.excerpt`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmemory.io import InputError, excerpt, read_json_file

logger = logging.getLogger(__name__)

N_CHOICES = 4

# The short, stable labels that `data_report.json` groups dropped items by, in the order they are checked.
REASONS = (
    "dialogue not an object",
    "missing or mistyped field",
    "duplicate dialog_id",
    "empty dialogue",
    "bad turn",
    "duplicate photo_id",
    "no choices",
    "not four choices",
    "bad choice",
    "duplicate labels",
    "answer not a label",
    "choice names a photo that never appears",
    "choice names an object not in its photo",
)

FIXES = {
    "dialogue not an object": "each item of the list must be a JSON object with dialog_id, turns, choices and answer",
    "missing or mistyped field": ("give the item dialog_id (string or integer), turns (list), choices (list), "
                                  "answer (string) and, optionally, rationale (string)"),
    "duplicate dialog_id": "give every dialogue its own dialog_id",
    "empty dialogue": "give the dialogue at least one utterance turn {speaker, text} with non-empty text",
    "bad turn": ("write each turn as {speaker, text} or {speaker, photo: {photo_id, caption, objects: [str]}}, "
                 "with a non-empty speaker"),
    "duplicate photo_id": "give every photo of a dialogue its own photo_id",
    "no choices": "give the dialogue its four choices [{label, photo_id, object, text}]",
    "not four choices": "give exactly four choices (the task is a 4-choice question)",
    "bad choice": "write each choice as {label, photo_id, object, text} with non-empty string label, object and text",
    "duplicate labels": "give the four choices four different labels (A, B, C, D)",
    "answer not a label": "set answer to the label of one of the choices (e.g. \"D\"), not to its text",
    "choice names a photo that never appears": ("point the choice's photo_id at a photo shared in the turns, or add "
                                                "that photo turn"),
    "choice names an object not in its photo": ("add the object to that photo's objects, or leave objects empty when "
                                                "the photo's objects are not listed"),
}


# seed-format text: a block `parse_seed_text` refuses, dropped in lenient mode before validation and counted first
PARSE_REASON = "block does not parse"
PARSE_FIX = ("write the block in seed 002's format (utterances A: \"...\", photo lines (사진 N: ...), 선택지: / "
             "Choices: with A) to D), then 정답: D) ... / Answer: D) ...), with a line of ===== between blocks")
ALL_FIXES = {PARSE_REASON: PARSE_FIX, **FIXES}


class CorefError(InputError):
    """A coref data file or item that cannot be used as it is."""


class SeedFormatError(CorefError):
    """Text that does not follow seed 002's example format."""


@dataclass
class Photo:
    photo_id: str | int
    caption: str
    objects: list[str] = field(default_factory=list)


@dataclass
class Turn:
    """An utterance (`text`) or a shared photo (`photo`): exactly one of the two is set."""

    speaker: str
    text: str | None = None
    photo: Photo | None = None

    def to_dict(self) -> dict:
        if self.photo is not None:
            return {"speaker": self.speaker, "photo": asdict(self.photo)}
        return {"speaker": self.speaker, "text": self.text}


@dataclass
class Choice:
    label: str
    photo_id: str | int
    object: str
    text: str


@dataclass
class Dialogue:
    dialog_id: str | int
    turns: list[Turn]
    choices: list[Choice]
    answer: str
    rationale: str | None = None

    @property
    def photos(self) -> dict:
        """photo_id -> (speaker who shared it, Photo), in order of appearance."""
        return {t.photo.photo_id: (t.speaker, t.photo) for t in self.turns if t.photo is not None}

    @property
    def answer_choice(self) -> Choice:
        return next(c for c in self.choices if c.label == self.answer)

    def to_dict(self) -> dict:
        out = {"dialog_id": self.dialog_id, "turns": [t.to_dict() for t in self.turns],
               "choices": [asdict(c) for c in self.choices], "answer": self.answer}
        if self.rationale is not None:
            out["rationale"] = self.rationale
        return out


@dataclass
class Problem:
    """One dropped item: `reason` is a short stable label from `REASONS`; `problem` is the detailed message."""

    source: str
    index: int
    dialog_id: Any
    reason: str
    problem: str

    def message(self) -> str:
        if self.reason == PARSE_REASON:  # the parser's message names the dialogue, the line and its own fix
            return f"{self.source}: block {self.index}: {self.problem}"
        return (f"{self.source}: dialogue {excerpt(self.dialog_id, 80)} (item {self.index}): {self.problem}. "
                f"Fix: {FIXES[self.reason]}")


@dataclass
class DataReport:
    """What validation kept and dropped; `to_json()` is the content of the stage's data_report.json."""

    source: str
    n_items: int = 0
    n_kept: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def dropped_by_reason(self) -> dict[str, int]:
        counts = Counter(p.reason for p in self.problems)
        return {r: counts[r] for r in (PARSE_REASON, *REASONS) if counts[r]}

    def to_json(self) -> dict:
        return {"source": self.source, "n_items": self.n_items, "n_kept": self.n_kept,
                "n_dropped": len(self.problems), "dropped_by_reason": self.dropped_by_reason,
                "problems": [p.message() for p in self.problems]}


def _nonempty_str(x) -> bool:
    return isinstance(x, str) and x.strip() != ""


def _id_like(x) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or _nonempty_str(x)


def _check_item(item: Any, seen_ids: set) -> tuple[str, str] | Dialogue:
    """The first (reason, detail) wrong with one item, or the parsed Dialogue."""
    if not isinstance(item, dict):
        return "dialogue not an object", f"the item is a {type(item).__name__}, not an object"
    missing = [k for k in ("dialog_id", "turns", "choices", "answer") if k not in item]
    if missing:
        return "missing or mistyped field", f"missing {', '.join(missing)}"
    unknown = sorted(set(item) - {"dialog_id", "turns", "choices", "answer", "rationale"})
    if unknown:
        return "missing or mistyped field", f"unknown field(s) {', '.join(unknown)}"
    if not _id_like(item["dialog_id"]):
        return "missing or mistyped field", "dialog_id is not a non-empty string or an integer"
    for key, typ in (("turns", list), ("choices", list), ("answer", str)):
        if not isinstance(item[key], typ):
            return "missing or mistyped field", f"{key} is a {type(item[key]).__name__}, not a {typ.__name__}"
    if "rationale" in item and not isinstance(item["rationale"], str):
        return "missing or mistyped field", "rationale is not a string"
    if item["dialog_id"] in seen_ids:
        return "duplicate dialog_id", f"dialog_id {excerpt(item['dialog_id'], 80)} appears earlier in the list"

    raw_turns = item["turns"]
    if not any(isinstance(t, dict) and _nonempty_str(t.get("text")) for t in raw_turns):
        return "empty dialogue", f"{len(raw_turns)} turn(s), none an utterance with text"
    turns: list[Turn] = []
    for k, t in enumerate(raw_turns):
        ok = isinstance(t, dict) and _nonempty_str(t.get("speaker"))
        if ok and set(t) == {"speaker", "text"}:
            ok = isinstance(t["text"], str)
            turns.append(Turn(t["speaker"], text=t["text"]))
        elif ok and set(t) == {"speaker", "photo"}:
            p = t["photo"]
            ok = (isinstance(p, dict) and set(p) == {"photo_id", "caption", "objects"} and _id_like(p["photo_id"])
                  and isinstance(p["caption"], str) and isinstance(p["objects"], list)
                  and all(_nonempty_str(o) for o in p["objects"]))
            if ok:
                turns.append(Turn(t["speaker"], photo=Photo(p["photo_id"], p["caption"], list(p["objects"]))))
        else:
            ok = False
        if not ok:
            return "bad turn", f"turn {k} is not {{speaker, text}} or {{speaker, photo: {{photo_id, caption, objects}}}}"
    photo_ids = [t.photo.photo_id for t in turns if t.photo is not None]
    dup = [p for p, n in Counter(photo_ids).items() if n > 1]
    if dup:
        return "duplicate photo_id", f"photo_id {excerpt(dup[0], 80)} is shared twice"

    raw_choices = item["choices"]
    if not raw_choices:
        return "no choices", "choices is empty"
    if len(raw_choices) != N_CHOICES:
        return "not four choices", f"{len(raw_choices)} choices"
    choices: list[Choice] = []
    for k, c in enumerate(raw_choices):
        if not (isinstance(c, dict) and set(c) == {"label", "photo_id", "object", "text"} and _nonempty_str(c["label"])
                and _id_like(c["photo_id"]) and _nonempty_str(c["object"]) and _nonempty_str(c["text"])):
            return "bad choice", f"choice {k} is not {{label, photo_id, object, text}}"
        choices.append(Choice(c["label"], c["photo_id"], c["object"], c["text"]))
    labels = [c.label for c in choices]
    if len(set(labels)) != len(labels):
        return "duplicate labels", f"labels {labels}"
    if item["answer"] not in labels:
        return "answer not a label", f"answer {excerpt(item['answer'])} is not one of the labels {excerpt(labels)}"
    photos = {t.photo.photo_id: t.photo for t in turns if t.photo is not None}
    for c in choices:
        if c.photo_id not in photos:
            return ("choice names a photo that never appears",
                    f"choice {c.label} names photo {excerpt(c.photo_id, 80)}; the turns share {excerpt(list(photos))}")
    for c in choices:
        objs = photos[c.photo_id].objects
        if objs and c.object not in objs:
            return ("choice names an object not in its photo",
                    f"choice {c.label} names {excerpt(c.object, 80)}; photo {excerpt(c.photo_id, 80)} lists "
                    f"{excerpt(objs)}")
    return Dialogue(item["dialog_id"], turns, choices, item["answer"], item.get("rationale"))


def validate_dialogues(items: Any, strict: bool = True, source: str = "<items>",
                       positions: list[int] | None = None) -> tuple[list[Dialogue], DataReport]:
    """Check a list of schema dicts. Strict: the first bad item raises `CorefError` (dialogue, problem, fix).
    Lenient: bad items are dropped and counted by reason in the returned `DataReport`. `positions[i]`: where item i
    was in its file, for messages (default: i)."""
    if not isinstance(items, list):
        raise CorefError(f"{source}: the file holds a {type(items).__name__}, not a JSON list of dialogues. "
                         f"Fix: write a list [{{dialog_id, turns, choices, answer}}, ...]")
    report = DataReport(source, n_items=len(items))
    kept: list[Dialogue] = []
    seen: set = set()
    for i, item in enumerate(items):
        got = _check_item(item, seen)
        if isinstance(got, Dialogue):
            seen.add(got.dialog_id)
            kept.append(got)
            continue
        did = item.get("dialog_id") if isinstance(item, dict) else None
        problem = Problem(source, positions[i] if positions else i, did, *got)
        if strict:
            raise CorefError(problem.message())
        report.problems.append(problem)
    report.n_kept = len(kept)
    if report.problems:
        logger.warning("%s: dropped %d of %d dialogues: %s", source, len(report.problems), len(items),
                       report.dropped_by_reason)
    return kept, report


def load_coref(path: str | Path, strict: bool = True) -> tuple[list[Dialogue], DataReport]:
    """Read and validate a coref JSON file (see `validate_dialogues`)."""
    path = Path(path)
    if not path.is_file():
        raise CorefError(f"{path}: no such file. Fix: check the path (the coref_data rule writes the splits)")
    items = read_json_file(path, CorefError, "write a JSON list of dialogues (docs/coref.md)")
    return validate_dialogues(items, strict=strict, source=str(path))


def dump_coref(dialogues: list[Dialogue | dict]) -> str:
    """The JSON text of a list of dialogues, non-ASCII text written as it is (Korean stays readable)."""
    items = [d.to_dict() if isinstance(d, Dialogue) else d for d in dialogues]
    return json.dumps(items, ensure_ascii=False, indent=1)


# ---------------------------------------------------------------------------------------------- seed text format

_UTTERANCE = re.compile(r'^(?P<speaker>[^\s:()]+)\s*:\s*(?P<text>.*)$')
_PHOTO = re.compile(r'^\(\s*(?:사진|photo)\s*(?P<n>\d+)\s*:\s*(?P<caption>.*)\)$', re.IGNORECASE)
_CHOICES = re.compile(r'^(?:선택지|choices)\s*:\s*$', re.IGNORECASE)
_CHOICE = re.compile(r'^(?P<label>[A-Z])\)\s*(?P<text>.+)$')
LABELS = "ABCD"  # the format's choice labels
_ANSWER = re.compile(r'^(?:정답|answer)\s*:\s*(?P<label>[A-Z])(?:\)\s*(?P<text>.*))?$', re.IGNORECASE)
_QUOTES = ('""', '“”', "''", '‘’', '「」')
_SEPARATOR = re.compile(r'^-{3,}$')
_CONTROL = re.compile(r'[\x00-\x08\x0b-\x1f\x7f\ufffd]')  # NUL and other control characters; U+FFFD: bytes lost


def _unquote(s: str) -> str:
    s = s.strip()
    for q in _QUOTES:
        if len(s) >= 2 and s[0] == q[0] and s[-1] == q[1]:
            return s[1:-1]
    return s


def _choice_target(text: str, speakers: list[str]) -> tuple[str | None, str | None, str]:
    """(speaker, photo number, object) named by a choice's text: `A가 올린 사진 속 노트북`, `사진 1 속 노트북`,
    `the laptop in A's photo`, `the laptop in photo 1`."""
    t = text.strip()
    m = re.match(r'^사진\s*(\d+)\s*(?:속|에 있는|의)\s*(.+)$', t)
    if m:
        return None, m.group(1), m.group(2).strip()
    for s in sorted(speakers, key=len, reverse=True):
        m = re.match(rf'^{re.escape(s)}\s*(?:가|이|의)\s*(?:올린|공유한|보낸)?\s*사진\s*(?:속|에 있는|의)?\s*(.+)$', t)
        if m:
            return s, None, m.group(1).strip()
    m = re.match(r'^(\S+?)(?:가|이)\s*(?:올린|공유한|보낸)\s*사진\s*(?:속|에 있는|의)?\s*(.+)$', t)
    if m:  # a speaker who said nothing: named, so that validation reports the choice
        return m.group(1), None, m.group(2).strip()
    m = re.match(r"^(?:the\s+)?(.+?)\s+(?:in|from)\s+photo\s*(\d+)\.?$", t, re.IGNORECASE)
    if m:
        return None, m.group(2), m.group(1).strip()
    for s in sorted(speakers, key=len, reverse=True):
        m = re.match(rf"^(?:the\s+)?(.+?)\s+(?:in|from)\s+{re.escape(s)}['’]s\s+photo\.?$", t, re.IGNORECASE)
        if m:
            return s, None, m.group(1).strip()
    m = re.match(r"^(?:the\s+)?(.+?)\s+(?:in|from)\s+(\S+?)['’]s\s+photo\.?$", t, re.IGNORECASE)
    if m:
        return m.group(2), None, m.group(1).strip()
    return None, None, t


def parse_seed_text(text: str, dialog_id: str | int = "seed-0", first_line: int = 1) -> dict:
    """One example block in seed 002's format -> a schema dict (check it with `validate_dialogues`).

    A photo line belongs to the speaker of the utterance before it; its photo_id is its number as a string. Each
    choice's photo is the one its text names (by number, or by the speaker who shared it), and a photo's objects are
    the objects its choices name, in choice order. Everything after the answer line (a `-----` line dropped) is the
    rationale, verbatim. Raises `SeedFormatError` naming the line (counted from `first_line`, the block's first line
    in its file) and the fix."""
    turns: list[dict] = []
    choices_raw: list[tuple[str, str]] = []
    answer: tuple[str, str | None] | None = None
    rationale_lines: list[str] = []
    section = "turns"

    def fail(k: int, line: str, why: str, fix: str):
        raise SeedFormatError(f"dialogue {excerpt(dialog_id, 80)}, line {k + first_line} {excerpt(line)}: {why}. "
                              f"Fix: {fix}")

    if text.startswith("\ufeff"):  # a byte-order mark is not part of the first speaker's name
        text = text[1:]
    for k, raw in enumerate(text.splitlines()):
        line = raw.strip()
        if (bad := _CONTROL.search(raw)) is not None:
            fail(k, line, f"a control character U+{ord(bad.group()):04X} at column {bad.start() + 1} (binary junk, "
                 "or bytes that were not text)", "delete it: the file must be plain UTF-8 text")
        if section == "rationale":
            if _ANSWER.match(line) or _CHOICES.match(line):
                fail(k, line, "a second answer line or choices header after the answer (two dialogues without a "
                     "line of ===== between them?)", "put a line of ===== between dialogue blocks, or delete the line")
            rationale_lines.append(raw.rstrip())
            continue
        if not line or line.startswith("```"):
            if section == "choices" and choices_raw:
                section = "after choices"
            continue
        if (m := _ANSWER.match(line)) and section in ("choices", "after choices"):
            if not choices_raw:
                fail(k, line, "the choices block lists no options", "list the options A) to D) after `선택지:` / "
                     "`Choices:`, one a line, before the answer")
            if m.group("label") not in LABELS:
                fail(k, line, f"answer label {m.group('label')} is not one of A to D", "answer with the label of one "
                     "of the four options, A) to D)")
            answer = (m.group("label"), m.group("text"))
            section = "rationale"
        elif section == "turns" and _ANSWER.match(line):
            fail(k, line, "an answer line with no choices block before it", "list the four options after a `선택지:` "
                 "/ `Choices:` line (A) to D), one a line), before the answer")
        elif _CHOICES.match(line):
            if section != "turns":
                fail(k, line, "a second choices header", "give one `선택지:` / `Choices:` block per dialogue")
            section = "choices"
        elif section == "choices" and (m := _CHOICE.match(line)):
            if m.group("label") not in LABELS:
                fail(k, line, f"option label {m.group('label')} is not one of A to D", "label the four options A) "
                     "to D)")
            choices_raw.append((m.group("label"), m.group("text").strip()))
        elif section == "turns" and (m := _PHOTO.match(line)):
            if not turns:
                fail(k, line, "a photo line before any utterance", "put the photo after the utterance that shares it")
            speaker = turns[-1]["speaker"]
            turns.append({"speaker": speaker, "photo": {"photo_id": m.group("n"), "caption": m.group("caption").strip(),
                                                        "objects": []}})
        elif section == "turns" and (m := _UTTERANCE.match(line)):
            turns.append({"speaker": m.group("speaker"), "text": _unquote(m.group("text"))})
        elif section == "after choices":
            fail(k, line, "no answer line after the choices", "follow the choices with `정답: D) ...` or `Answer: D) ...`")
        else:
            fail(k, line, f"not a line the format allows here ({section})",
                 'write utterances as A: "...", photos as (사진 N: ...) or (photo N: ...), then 선택지: / Choices: '
                 "with A) ... lines, then 정답: D) ... / Answer: D) ...")
    if answer is None:
        raise SeedFormatError(f"dialogue {dialog_id!r}: no answer line. Fix: end the choices with `정답: D) ...` or "
                              f"`Answer: D) ...`")

    speakers = list(dict.fromkeys(t["speaker"] for t in turns))
    photo_of_speaker: dict[str, list[str]] = {}
    for t in turns:
        if "photo" in t:
            photo_of_speaker.setdefault(t["speaker"], []).append(t["photo"]["photo_id"])
    choices = []
    for label, ctext in choices_raw:
        speaker, number, obj = _choice_target(ctext, speakers)
        if number is not None:
            photo_id = number
        elif speaker is not None and len(photo_of_speaker.get(speaker, [])) == 1:
            photo_id = photo_of_speaker[speaker][0]
        elif speaker is not None:
            # no photo (or several) from that speaker: name it so validation reports the choice, not a guess
            photo_id = f"{speaker}'s photo"
        else:
            raise SeedFormatError(f"dialogue {dialog_id!r}: choice {label}) {excerpt(ctext)} names no photo. Fix: "
                                  f"write it as `A가 올린 사진 속 X`, `사진 N 속 X`, `the X in A's photo` or `the X in photo N`")
        choices.append({"label": label, "photo_id": photo_id, "object": obj, "text": ctext})
    photos = {t["photo"]["photo_id"]: t["photo"] for t in turns if "photo" in t}
    for c in choices:
        if c["photo_id"] in photos and c["object"] not in photos[c["photo_id"]]["objects"]:
            photos[c["photo_id"]]["objects"].append(c["object"])

    label, atext = answer
    if atext and any(c["label"] == label and c["text"] != atext.strip() for c in choices):
        raise SeedFormatError(f"dialogue {dialog_id!r}: the answer line says {label}) {excerpt(atext)}, but choice "
                              f"{label} is {excerpt(next(c['text'] for c in choices if c['label'] == label))}. Fix: "
                              "make them agree")
    out = {"dialog_id": dialog_id, "turns": turns, "choices": choices, "answer": label}
    while rationale_lines and (not rationale_lines[0].strip() or _SEPARATOR.match(rationale_lines[0].strip())):
        rationale_lines.pop(0)
    while rationale_lines and (not rationale_lines[-1].strip() or rationale_lines[-1].strip().startswith("```")):
        rationale_lines.pop()
    if rationale_lines:
        out["rationale"] = "\n".join(rationale_lines)
    return out


# ---------------------------------------------------------------------------------------------------- splits

SPLITS = ("train", "val", "test")


def content_key(d: Dialogue | dict) -> str:
    """A digest of what a dialogue says: its turns' speakers, utterances and captions (not its id)."""
    turns = d.turns if isinstance(d, Dialogue) else [_as_turn(t) for t in d["turns"]]
    parts = [f"{t.speaker}\x1f{t.text}" if t.photo is None else f"{t.speaker}\x1fphoto\x1f{t.photo.caption}"
             for t in turns]
    return hashlib.blake2b("\x1e".join(" ".join(p.split()) for p in parts).encode(), digest_size=16).hexdigest()


def _as_turn(t: dict) -> Turn:
    if "photo" in t:
        p = t["photo"]
        return Turn(t["speaker"], photo=Photo(p["photo_id"], p["caption"], p.get("objects", [])))
    return Turn(t["speaker"], text=t["text"])


def split_dialogues(dialogues: list, test_share: float = 0.2, val_share_of_train: float = 0.1,
                    seed: int = 0) -> dict[str, list]:
    """Seeded train/val/test, disjoint by content: dialogues with the same `content_key` go to one split together.
    Test takes `test_share` (the seed's 80/20: 1,380 / 346 of 1,726), val is carved from the rest."""
    groups: dict[str, list] = {}
    for d in dialogues:
        groups.setdefault(content_key(d), []).append(d)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    n = len(dialogues)
    n_test = round(n * test_share)
    n_val = round((n - n_test) * val_share_of_train)
    out: dict[str, list] = {s: [] for s in SPLITS}
    for key in keys:
        target = "test" if len(out["test"]) < n_test else "val" if len(out["val"]) < n_val else "train"
        out[target].extend(groups[key])
    return out


def shared_content(splits: dict[str, list]) -> list[tuple[str, str, str]]:
    """(content key, split, other split) for every dialogue text found in two splits; empty when disjoint."""
    where: dict[str, str] = {}
    out = []
    for name, items in splits.items():
        for key in {content_key(d) for d in items}:
            if key in where and where[key] != name:
                out.append((key, where[key], name))
            where.setdefault(key, name)
    return out
