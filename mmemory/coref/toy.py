"""The embedded default's toy coref dialogues (English), in the stage's schema, deterministic by seed.

Two speakers, A and B, each share one photo of two everyday objects with attributes ("a red mug and a wooden lamp
on a desk"); the four objects have four different nouns. They talk about the objects, then the final speaker says
"that one" or "that <attribute> one". The referent follows from the dialogue, by one of two rules:

- `praise`: the object praised last ("I really love the mug"), always by the OTHER speaker. Earlier praise, by
  either speaker, is the distractor; every remark after the marking praise is neutral (issue 23: who praised
  never decides the answer, see docs/coref.md, "Praise dialogues");
- `attribute`: the one object whose attribute (given in the captions) the final utterance names.

No surface cue gives it away. Each dialogue is built in two steps:

1. **A mention skeleton, drawn before the referent.** The middle turns alternate speakers, 7-10 of them (so
   dialogue lengths vary), and end with the other speaker, so the final speaker comes next. Each turn remarks on one
   object. The other speaker mentions every one of the four objects at least once (a shuffled permutation, plus
   uniform extra mentions); the final speaker's mentions are uniform. Whether a mention names the object by its
   noun or by attribute and noun is a coin.
2. **The referent, drawn uniformly from the four objects, independently of the skeleton.** Then the words are
   chosen to make it the answer: `praise` praises one of the referent's mentions by the other speaker (drawn
   uniformly), makes every later remark neutral, and lets every earlier remark be praise or neutral by a coin;
   `attribute` gives the referent an attribute no other object has and names it in the final turn.

So everything the skeleton decides (how often an object is mentioned; whether first, in the middle or last; once
or several times; by which speaker first and last, including the other speaker's first and last mentions) is
independent of the answer, and so are the answer letter (a shuffled, balanced cycle of A-D), the photo owner and
the object's place in its photo. `shortcut_*` baselines (`mmemory.coref.baselines`) that read these cues score
chance; `resolve_by_rule` reads the referent from the text by the task's definition (1.0 on every toy dialogue).
"""
from __future__ import annotations

import random
import re

from mmemory.coref.data import Dialogue, validate_dialogues

SPEAKERS = ("A", "B")
LABELS = ("A", "B", "C", "D")
NOUNS = ("mug", "laptop", "lamp", "book", "plant", "backpack", "camera", "umbrella", "scarf", "vase", "clock",
         "guitar", "teapot", "notebook", "candle", "bowl", "kettle", "hat", "wallet", "blanket", "radio", "chair")
ATTRIBUTES = ("red", "blue", "green", "yellow", "wooden", "striped", "silver", "black", "white", "pink", "grey",
              "brown")
PLACES = ("on a desk", "on a sofa", "on a shelf", "on a kitchen table", "by a window", "on a bed")
SHARE = ("Here's a photo I took at home today.", "Let me share a picture from my place.",
         "This is what my corner looks like right now.")
REPLY_SHARE = ("Nice! Here's one I just took.", "Cool, let me share mine too.", "Oh, I have a photo like that too.")
PRAISE_WORDS = ("love", "great", "gorgeous", "beautiful", "adore", "amazing")
# the praise word comes before the object it praises (docs/coref.md: the stand-ins bind a praise to the object
# after it, 0.82 on val, but not to the object before it, 0.32)
PRAISE = ("I really love {o}.", "Great choice, {o}.", "Such a gorgeous piece, {o}.", "What a beautiful {n}, {o}!",
          "I adore {o}.", "Simply amazing, {o}.")
NEUTRAL = ("{O} was on sale last month.", "I noticed {o} too.", "Where did {o} come from?", "{O} is a bit old now.",
           "{O} was moved there yesterday.", "Is {o} heavy?")
FINAL = ("I'd like to have that {a}one too.", "Honestly, that {a}one is exactly what I need.",
         "I keep thinking about that {a}one.")
RULES = ("praise", "attribute")
MIDDLE_TURNS = (7, 8, 9, 10)  # remarks between the photos and the final turn (the other speaker has 4 or 5)
PRAISE_SHARE = 0.5  # the chance that a free remark (not the referent's marking praise) is praise


def _mention(rng: random.Random, attr: str, noun: str) -> str:
    return f"the {attr} {noun}" if rng.random() < 0.5 else f"the {noun}"


def _remark(rng: random.Random, templates: tuple[str, ...], attr: str, noun: str) -> str:
    o = _mention(rng, attr, noun)
    t = rng.choice(templates)
    return t.format(o=o, O=o[0].upper() + o[1:], n=noun)


def mention_skeleton(rng: random.Random, final_speaker: str) -> list[tuple[str, int]]:
    """The middle turns as (speaker, object index 0-3), drawn before (and independently of) the referent: speakers
    alternate from A and end with the other speaker; the other speaker names all four objects (shuffled, plus
    uniform extras), the final speaker uniform objects."""
    m = rng.choice([n for n in MIDDLE_TURNS if SPEAKERS[n % 2] == final_speaker])
    speakers = [SPEAKERS[j % 2] for j in range(m)]
    n_other = sum(s != final_speaker for s in speakers)
    other_objects = list(range(4)) + [rng.randrange(4) for _ in range(n_other - 4)]
    rng.shuffle(other_objects)
    it = iter(other_objects)
    return [(s, next(it) if s != final_speaker else rng.randrange(4)) for s in speakers]


def make_dialogue(rng: random.Random, dialog_id: str, answer_label: str, rule: str) -> dict:
    """One toy dialogue (a schema dict) whose answer is `answer_label`, resolved by `rule` (module docstring)."""
    if rule not in RULES:
        raise ValueError(f"toy coref rule {rule!r}: choose from {RULES}")
    nouns = rng.sample(NOUNS, 4)
    final_speaker = rng.choice(SPEAKERS)
    other = "B" if final_speaker == "A" else "A"
    skeleton = mention_skeleton(rng, final_speaker)
    ref = rng.randrange(4)  # independent of the skeleton
    attrs = rng.choices(ATTRIBUTES, k=4)
    if rule == "attribute":  # the referent's attribute is the only one of its kind
        others = [a for a in ATTRIBUTES if a != attrs[ref]]
        attrs = [a if i == ref else rng.choice(others) for i, a in enumerate(attrs)]
    objs = list(zip(attrs, nouns))  # objs[0:2] in A's photo, objs[2:4] in B's photo

    turns: list[dict] = []
    for k, speaker in enumerate(SPEAKERS):
        (a1, n1), (a2, n2) = objs[2 * k], objs[2 * k + 1]
        turns.append({"speaker": speaker, "text": rng.choice(SHARE if k == 0 else REPLY_SHARE)})
        turns.append({"speaker": speaker, "photo": {"photo_id": str(k + 1), "caption":
                      f"a {a1} {n1} and a {a2} {n2} {rng.choice(PLACES)}", "objects": [n1, n2]}})
    praise_at = None
    if rule == "praise":  # one of the referent's mentions by the other speaker is its marking praise
        praise_at = rng.choice([j for j, (s, i) in enumerate(skeleton) if s == other and i == ref])
    for j, (s, i) in enumerate(skeleton):
        if j == praise_at:
            praised = True
        elif praise_at is not None and j > praise_at:
            praised = False  # every later remark is neutral: the marking praise is the last one
        else:
            praised = rng.random() < PRAISE_SHARE
        turns.append({"speaker": s, "text": _remark(rng, PRAISE if praised else NEUTRAL, *objs[i])})
    attr = f"{objs[ref][0]} " if rule == "attribute" else ""
    turns.append({"speaker": final_speaker, "text": rng.choice(FINAL).format(a=attr)})

    order = [i for i in range(4) if i != ref]
    rng.shuffle(order)
    order.insert(LABELS.index(answer_label), ref)
    choices = [{"label": lab, "photo_id": str(i // 2 + 1), "object": objs[i][1],
                "text": f"the {objs[i][1]} in {SPEAKERS[i // 2]}'s photo"} for lab, i in zip(LABELS, order)]
    owner, (ref_attr, ref_noun) = SPEAKERS[ref // 2], objs[ref]
    rationale = (f"{other} praised the {ref_noun} last, so {final_speaker}'s 'that one' is the {ref_noun} in "
                 f"{owner}'s photo." if rule == "praise" else
                 f"Only the {ref_noun} in {owner}'s photo is {ref_attr}, so 'that {ref_attr} one' is the {ref_noun}.")
    return {"dialog_id": dialog_id, "turns": turns, "choices": choices, "answer": answer_label,
            "rationale": rationale}


def make_toy_dialogues(n: int, seed: int = 0, rules: tuple[str, ...] = RULES) -> list[dict]:
    """`n` toy dialogues (schema dicts): answer letters balanced, rules taken in turn."""
    unknown = [r for r in rules if r not in RULES]
    if unknown or not rules:
        raise ValueError(f"toy coref rules {unknown or rules!r}: choose from {RULES}")
    rng = random.Random(seed)
    letters = [LABELS[i % 4] for i in range(n)]
    rng.shuffle(letters)
    items = [make_dialogue(rng, f"toy-{seed}-{i:05d}", letters[i], rules[i % len(rules)]) for i in range(n)]
    validate_dialogues(items, strict=True, source="toy coref generator")
    return items


def _as_dialogue(d: Dialogue | dict) -> Dialogue:
    return d if isinstance(d, Dialogue) else validate_dialogues([d], strict=True)[0][0]


def _named(text: str, nouns: list[str]) -> list[str]:
    """The nouns a text names, in the order of their last mention."""
    last = {n: max(m.start() for m in found) for n in nouns
            if (found := list(re.finditer(rf"\b{re.escape(n)}\b", text, re.IGNORECASE)))}
    return sorted(last, key=last.get)


def dialogue_kind(d: Dialogue | dict) -> str:
    """Which rule a toy dialogue's final turn asks for: `attribute` ("that red one") or `praise` ("that one")."""
    d = _as_dialogue(d)
    final = [t for t in d.turns if t.photo is None][-1]
    m = re.search(r"\bthat (\w+) one\b", final.text)
    return "attribute" if m and m.group(1) in ATTRIBUTES else "praise"


def resolve_by_rule(d: Dialogue | dict) -> str | None:
    """The label a reader of the dialogue's text picks by the toy's two rules (None when neither applies)."""
    d = _as_dialogue(d)
    by_object = {c.object: c.label for c in d.choices}
    utterances = [t for t in d.turns if t.photo is None]
    final, before = utterances[-1], utterances[:-1]
    m = re.search(r"\bthat (\w+) one\b", final.text)
    if m and m.group(1) in ATTRIBUTES:
        hits = [n for t in d.turns if t.photo is not None
                for n in re.findall(rf"\b{m.group(1)} (\w+)", t.photo.caption) if n in by_object]
        return by_object[hits[0]] if len(hits) == 1 else None
    for t in reversed(before):
        if t.speaker != final.speaker and any(re.search(rf"\b{w}\b", t.text, re.IGNORECASE) for w in PRAISE_WORDS):
            named = _named(t.text, list(by_object))
            return by_object[named[0]] if len(named) == 1 else None
    return None


def referring_expression(d: Dialogue | dict) -> str:
    """The final utterance's referring expression: "that one" (praise) or "that <attribute> one" (attribute)."""
    d = _as_dialogue(d)
    final = [t for t in d.turns if t.photo is None][-1]
    m = re.search(r"\bthat (\w+ )?one\b", final.text)
    if m is None:
        raise ValueError(f"dialogue {d.dialog_id!r}: the final utterance says neither 'that one' nor 'that "
                         "<attribute> one', so it is not a toy dialogue. Fix: the answer format `evidence` is the "
                         "toy's; use `text` or `option` (coref.train.target, coref.eval.answer_format)")
    return m.group(0)


def _praise_of(text: str, noun: str) -> str | None:
    """The praise of `noun` in a remark, quoted from its praise word to the noun ("love the pink radio", "Great
    choice, the lamp"), or None when the remark does not praise it (no praise word before the noun)."""
    words = [m for w in PRAISE_WORDS if (m := re.search(rf"\b{w}\b", text, re.IGNORECASE))]
    named = [m.end() for m in re.finditer(rf"\b{re.escape(noun)}\b", text, re.IGNORECASE)]
    if not words or not named:
        return None
    start = min(m.start() for m in words)
    end = max(named)
    return text[start:end] if start < end else None


def evidence(d: Dialogue | dict, choice_label: str) -> str:
    """What a toy dialogue says that makes the choice `choice_label` its referent: the final turn's referring
    expression, then the choice's attribute and noun as its caption gives them ("that red one = red mug"), or the
    last praise of it, quoted with its speaker from the praise word to the noun ("that one = B: love the pink mug";
    a choice nobody praised gets the other speaker and its bare noun). The `evidence` answer format writes it before
    the option's words, so the answer starts by copying the referring expression (which tells the two kinds apart),
    then copies the evidence, and the object's name follows it (docs/coref.md: quoting the praise makes the praised
    object the next token of a copy, which the stand-ins learn; naming it after "B praised" they did not always).
    ValueError for a dialogue the toy generator did not write (no caption gives the object an attribute)."""
    d = _as_dialogue(d)
    choice = next((c for c in d.choices if c.label == choice_label), None)
    if choice is None:
        raise ValueError(f"dialogue {d.dialog_id!r}: no choice labelled {choice_label!r}")
    captions = " ".join(t.photo.caption for t in d.turns if t.photo is not None)
    attrs = re.findall(rf"\b(\w+) {re.escape(choice.object)}\b", captions)
    if not attrs or attrs[0] not in ATTRIBUTES:
        raise ValueError(f"dialogue {d.dialog_id!r}: no caption gives {choice.object!r} one of the toy's attributes, "
                         "so it is not a toy dialogue. Fix: the answer format `evidence` is the toy's; use `text` or "
                         "`option` (coref.train.target, coref.eval.answer_format)")
    said = referring_expression(d)
    if dialogue_kind(d) == "attribute":
        return f"{said} = {attrs[0]} {choice.object}"
    utterances = [t for t in d.turns if t.photo is None]
    for t in reversed(utterances[:-1]):
        if (quoted := _praise_of(t.text, choice.object)) is not None:
            return f"{said} = {t.speaker}: {quoted}"
    other = next((s for s in SPEAKERS if s != utterances[-1].speaker), SPEAKERS[0])
    return f"{said} = {other}: {choice.object}"


def most_recent_mention(d: Dialogue | dict) -> str | None:
    """The "most recently mentioned object" heuristic: the label of the choice whose object an utterance before the
    last named most recently (None when none is named)."""
    d = _as_dialogue(d)
    utterances = [t for t in d.turns if t.photo is None][:-1]
    for t in reversed(utterances):
        named = _named(t.text, [c.object for c in d.choices])
        if named:
            return next(c.label for c in d.choices if c.object == named[-1])
    return None
