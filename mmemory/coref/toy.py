"""The embedded default's toy coref dialogues (English), in the stage's schema, deterministic by seed.

Two speakers, A and B, each share one photo of two everyday objects with attributes ("a red mug and a wooden lamp
on a desk"); the four objects have four different nouns. They talk about the objects, then the final speaker says
"that one" or "that <attribute> one". The referent follows from the dialogue, by one of two rules:

- `praise`: the object the OTHER speaker praised last ("I really love the mug"). Praise by the final speaker, and
  neutral remarks after the last praise, are distractors;
- `attribute`: the one object whose attribute (given in the captions) the final utterance names.

Nothing else gives it away: the referent is drawn uniformly from the four objects (so from both photos and both
speakers), the answer letters are balanced (a shuffled cycle of A-D), the other three choices are shuffled, and
the turn before the last remarks on a uniformly drawn object, so "the most recently mentioned object" is right
one time in four. `resolve_by_rule` reads the referent from the text alone (an oracle: 1.0 on every toy dialogue).
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
PRAISE = ("I really love {o}.", "{O} looks great.", "{O} is gorgeous, honestly.", "What a beautiful {n}, {o}!",
          "I adore {o}.", "{O} is amazing.")
NEUTRAL = ("{O} was on sale last month.", "I noticed {o} too.", "Where did {o} come from?", "{O} is a bit old now.",
           "{O} was moved there yesterday.", "Is {o} heavy?")
FINAL = ("I'd like to have that {a}one too.", "Honestly, that {a}one is exactly what I need.",
         "I keep thinking about that {a}one.")
RULES = ("praise", "attribute")


def _mention(rng: random.Random, attr: str, noun: str) -> str:
    return f"the {attr} {noun}" if rng.random() < 0.5 else f"the {noun}"


def _remark(rng: random.Random, templates: tuple[str, ...], attr: str, noun: str) -> str:
    o = _mention(rng, attr, noun)
    t = rng.choice(templates)
    return t.format(o=o, O=o[0].upper() + o[1:], n=noun)


def make_dialogue(rng: random.Random, dialog_id: str, answer_label: str, rule: str) -> dict:
    """One toy dialogue (a schema dict) whose answer is `answer_label`, resolved by `rule`."""
    nouns = rng.sample(NOUNS, 4)
    ref = rng.randrange(4)
    attrs = rng.choices(ATTRIBUTES, k=4)
    if rule == "attribute":  # the referent's attribute is the only one of its kind
        others = [a for a in ATTRIBUTES if a != attrs[ref]]
        attrs = [a if i == ref else rng.choice(others) for i, a in enumerate(attrs)]
    objs = list(zip(attrs, nouns))  # objs[0:2] in A's photo, objs[2:4] in B's photo
    final_speaker = rng.choice(SPEAKERS)
    other = "B" if final_speaker == "A" else "A"

    turns: list[dict] = []
    for k, speaker in enumerate(SPEAKERS):
        (a1, n1), (a2, n2) = objs[2 * k], objs[2 * k + 1]
        turns.append({"speaker": speaker, "text": rng.choice(SHARE if k == 0 else REPLY_SHARE)})
        turns.append({"speaker": speaker, "photo": {"photo_id": str(k + 1), "caption":
                      f"a {a1} {n1} and a {a2} {n2} {rng.choice(PLACES)}", "objects": [n1, n2]}})
    # middle turns alternate A, B, ...; their number makes the final speaker come next
    m = rng.choice([n for n in (4, 5, 6, 7) if SPEAKERS[n % 2] == final_speaker])
    speakers = [SPEAKERS[j % 2] for j in range(m)]
    lines: list[str] = []
    other_turns = [j for j in range(m - 1) if speakers[j] == other]
    praise_at = rng.choice(other_turns) if rule == "praise" else None
    for j, s in enumerate(speakers):
        if j == m - 1:  # the turn before the last: a neutral remark on any object
            i = rng.randrange(4)
            lines.append(_remark(rng, NEUTRAL, *objs[i]))
        elif j == praise_at:
            lines.append(_remark(rng, PRAISE, *objs[ref]))
        elif rule == "praise" and j > praise_at:  # later: the other speaker's neutral remarks, the final
            i = rng.choice([x for x in range(4) if x != ref])  # speaker's own praise, of other objects
            lines.append(_remark(rng, NEUTRAL if s == other else PRAISE, *objs[i]))
        else:
            i = rng.randrange(4)
            lines.append(_remark(rng, PRAISE if rng.random() < 0.5 else NEUTRAL, *objs[i]))
    turns += [{"speaker": s, "text": t} for s, t in zip(speakers, lines)]
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
