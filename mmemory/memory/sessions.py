"""Long memory sessions from VisDial: chain several dialogues (one image each) into one session with timestamps, and
write questions that refer back to an earlier image or turn, with known evidence turn ids.

Output is the "Memory sessions" contract (README, "Data contracts"):
    turns.jsonl    {"session_id", "turn_id", "timestamp", "speaker", "text", "image"?, "caption"?}
    queries.jsonl  {"query_id", "session_id", "timestamp", "question", "evidence": [turn_id...], "answer"?, "type"}

Each dialogue becomes one image turn (the user shares the picture; its caption is remembered) followed by one turn
per round ("<question> <answer>"). After each dialogue the user asks about earlier ones:
- `picture`: "do you remember the picture with the red square and the blue circle?" -> that dialogue's image turn;
- `fact`: a paraphrase of an earlier round's question -> that round (only when the question is unique so far);
- `recent`: "what did we say most recently about the red circle?" -> the mentions in the LATEST dialogue that showed
  a red circle, when an earlier dialogue showed one too: relevance alone cannot tell them apart, recency can.
Picture and recent queries need object names; they are read from toy captions ("a picture of a red circle and ...").
On real VisDial only `fact` queries (verbatim questions) and `picture` queries (the caption) are written.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from mmemory.config import StrictConfig
from mmemory.visdial import VisDialSplit


@dataclass
class SessionsConfig(StrictConfig):
    """config memory.sessions: toy sessions chained from a split's dialogues (defaults: config.yaml's)."""

    SECTION = "memory.sessions"

    dialogs_per_session: int = 8  # dialogues (one image each) chained into one session
    hours_between_dialogs: float = 6.0  # time between consecutive dialogues of a session
    queries_per_type: int = 1  # picture / fact / recent queries asked after each dialogue (when possible)


_OBJ = re.compile(r"\b(red|green|blue|yellow|purple|orange) (circle|square|triangle)\b")

# Paraphrases of the toy question templates, so that a query is not a verbatim copy of the remembered turn.
_PARAPHRASE = [
    (re.compile(r"^where is the (.+)\?$"), "which part of that picture was the {0} in?"),
    (re.compile(r"^what color is the (.+)\?$"), "what colour did you say the {0} had?"),
    (re.compile(r"^how many (\w+)s are there\?$"), "how many {0}s did you count in that picture?"),
    (re.compile(r"^is there a (.+)\?$"), "did that picture contain a {0}?"),
    (re.compile(r"^is anything (\w+)\?$"), "was there something {0} in it?"),
    (re.compile(r"^are there any (\w+)s\?$"), "were there {0}s in that picture?"),
    (re.compile(r"^what shape is the (\w+) object\?$"), "which shape did the {0} object have?"),
]
_AMBIGUOUS = {"how many shapes are there?"}


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def objects_in(text: str) -> list[str]:
    """Toy object names ("red circle") mentioned in a text, in order, without repeats."""
    return list(dict.fromkeys(" ".join(m) for m in _OBJ.findall(text or "")))


def paraphrase(question: str, toy: bool) -> str | None:
    if question in _AMBIGUOUS:
        return None
    if not toy:
        return f"earlier I asked: {question}"
    for pattern, template in _PARAPHRASE:
        m = pattern.match(question)
        if m:
            return template.format(*m.groups())
    return None


def build_sessions(split: VisDialSplit, dialogs_per_session: int = SessionsConfig.dialogs_per_session,
                   hours_between_dialogs: float = SessionsConfig.hours_between_dialogs,
                   minutes_between_rounds: float = 1.0, queries_per_type: int = SessionsConfig.queries_per_type,
                   seed: int = 0,
                   start: str = "2024-01-01T09:00:00Z", prefix: str | None = None,
                   max_sessions: int | None = None) -> tuple[list[dict], list[dict]]:
    """(turns, queries) for sessions of `dialogs_per_session` chained dialogues of one VisDial split."""
    rng = random.Random(f"{seed}-memory-sessions-{split.split}")
    dialogs = list(split.dialogs)
    rng.shuffle(dialogs)
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    prefix = prefix or split.split
    turns, queries = [], []
    n_sessions = len(dialogs) // dialogs_per_session
    for s in range(n_sessions if max_sessions is None else min(n_sessions, max_sessions)):
        sid = f"{prefix}-s{s:03d}"
        chain = dialogs[s * dialogs_per_session:(s + 1) * dialogs_per_session]
        past: list[dict] = []          # per earlier dialogue: image turn, rounds, objects
        for d, dialog in enumerate(chain):
            t = t0 + timedelta(days=s, hours=d * hours_between_dialogs)
            img_tid = f"{sid}-d{d}-img"
            turns.append({"session_id": sid, "turn_id": img_tid, "timestamp": iso(t), "speaker": "user",
                          "text": "look at this picture", "image": dialog.get("image_path"),
                          "caption": dialog["caption"], "image_id": dialog["image_id"]})
            rounds = []
            for r, rnd in enumerate(dialog["dialog"], 1):
                q, a = split.question(rnd), split.answer(rnd)
                tid = f"{sid}-d{d}-r{r}"
                turns.append({"session_id": sid, "turn_id": tid,
                              "timestamp": iso(t + timedelta(minutes=r * minutes_between_rounds)),
                              "speaker": "assistant", "text": f"{q} {a}", "image_id": dialog["image_id"]})
                rounds.append({"turn_id": tid, "question": q, "answer": a})
            past.append({"img": img_tid, "caption": dialog["caption"], "rounds": rounds,
                         "objects": objects_in(dialog["caption"])})
            if d == 0:
                continue
            qt = t + timedelta(minutes=(len(rounds) + 30) * minutes_between_rounds)
            queries += _queries_after(sid, past, qt, rng, queries_per_type, toy=bool(past[-1]["objects"]))
    for n, q in enumerate(queries):
        q["query_id"] = f"{prefix}-q{n:05d}"
    return turns, queries


def _queries_after(sid: str, past: list[dict], t: datetime, rng: random.Random, per_type: int,
                   toy: bool) -> list[dict]:
    """Queries asked after the latest dialogue in `past` about the earlier ones (and, for `recent`, about all)."""
    out = []
    earlier = past[:-1]

    def q(kind: str, question: str, evidence: list[str], answer: str | None = None) -> dict:
        row = {"query_id": "", "session_id": sid, "timestamp": iso(t + timedelta(minutes=len(out))),
               "question": question, "evidence": evidence, "type": kind}
        if answer is not None:
            row["answer"] = answer
        out.append(row)
        return row

    # picture: name up to two of its objects (toy) or its caption (real data); distinct enough to be answerable
    for d in rng.sample(earlier, min(per_type, len(earlier))):
        if toy:
            objs = d["objects"][:2]
            others = [e for e in past if e is not d and all(o in e["objects"] for o in objs)]
            if others:
                continue
            q("picture", f"do you remember the picture with the {' and the '.join(objs)}?", [d["img"]], d["caption"])
        else:
            q("picture", f"do you remember the picture of {d['caption']}?", [d["img"]], d["caption"])
    # fact: a paraphrased round question that is unique in the session so far
    counts: dict[str, int] = {}
    for d in past:
        for r in d["rounds"]:
            counts[r["question"]] = counts.get(r["question"], 0) + 1
    facts = [(d, r) for d in earlier for r in d["rounds"] if counts[r["question"]] == 1
             and paraphrase(r["question"], toy) is not None]
    for d, r in rng.sample(facts, min(per_type, len(facts))):
        q("fact", paraphrase(r["question"], toy), [r["turn_id"]], r["answer"])
    # recent: an object shown in at least two dialogues so far; evidence = its mentions in the latest one
    if toy:
        shown: dict[str, list[dict]] = {}
        for d in past:
            for o in d["objects"]:
                shown.setdefault(o, []).append(d)
        repeated = sorted(o for o, ds in shown.items() if len(ds) >= 2)
        for o in rng.sample(repeated, min(per_type, len(repeated))):
            latest = shown[o][-1]
            evidence = [latest["img"]] + [r["turn_id"] for r in latest["rounds"] if o in f"{r['question']} {r['answer']}"]
            q("recent", f"what did we say most recently about the {o}?", evidence)
    return out
