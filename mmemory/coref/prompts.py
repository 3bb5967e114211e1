"""The coref stage's prompt and target, shared by training and both evaluation protocols.

A prompt is the dialogue in the seed's text format (utterances `A: "..."`, photos `(photo N: caption)`), the
choices, and an answer cue; the target is the answer's option, in one of three formats (`ANSWER_FORMATS`):

- `option`: as the seed writes its answer line, label and text (` D) the mug in B's photo`);
- `text`: the option's words alone (` the mug in B's photo`). The parser maps them back to the label: a tiny model
  can learn which object is meant long before it can bind that object to a letter (with `option` the tiny Llamas
  began their answers with one favourite letter; docs/coref.md);
- `evidence` (toy dialogues only; the embedded default): what the dialogue says for the option, then its words
  (` that red one = red mug -> the mug in B's photo`, ` that one = A: love the pink mug -> the mug in B's photo`;
  `mmemory.coref.toy.evidence`).
  The answer then begins by copying the evidence, and the object's name is the next token of a copy; the parser
  reads the part after the last ` -> ` (`answer_part`).

The prompt never contains the answer (nor the rationale); the target is the only place the answer appears.

    A: "Here's a photo I took at home today."
    (photo 1: a red mug and a wooden lamp on a desk)
    ...
    B: "I keep thinking about that one."

    Choices:
    A) the lamp in A's photo
    ...
    D) the mug in B's photo

    Answer:
"""
from __future__ import annotations

from dataclasses import replace

from mmemory.coref.data import Choice, Dialogue

CHOICES_HEADER = "Choices:"
ANSWER_CUE = "Answer:"
ANSWER_FORMATS = ("option", "text", "evidence")
EVIDENCE_ARROW = " -> "


def format_dialogue(d: Dialogue) -> str:
    """The dialogue's turns, one line each, as seed 002 writes them."""
    lines = []
    for t in d.turns:
        if t.photo is not None:
            lines.append(f"(photo {t.photo.photo_id}: {t.photo.caption})")
        else:
            lines.append(f'{t.speaker}: "{t.text}"')
    return "\n".join(lines)


def format_prompt(d: Dialogue) -> str:
    """The model's input: dialogue, choices and the answer cue (ends with `Answer:`; no trailing space)."""
    choices = "\n".join(f"{c.label}) {c.text}" for c in d.choices)
    return f"{format_dialogue(d)}\n\n{CHOICES_HEADER}\n{choices}\n\n{ANSWER_CUE}"


def format_option(c: Choice, answer_format: str = "option", dialogue: Dialogue | None = None) -> str:
    """One option as a continuation of the prompt: a space, then the label and its text (` D) the mug in B's photo`;
    format `option`), its text alone (` the mug in B's photo`; format `text`), or the toy dialogue's evidence for it
    and its text (` that red one = red mug -> the mug in B's photo`; format `evidence`, which needs the `dialogue`)."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"coref answer format {answer_format!r}: choose from {ANSWER_FORMATS}")
    if answer_format == "option":
        return f" {c.label}) {c.text}"
    if answer_format == "text":
        return f" {c.text}"
    if dialogue is None:
        raise ValueError("coref answer format 'evidence' needs the dialogue the option belongs to")
    from mmemory.coref.toy import evidence

    return f" {evidence(dialogue, c.label)}{EVIDENCE_ARROW}{c.text}"


def format_target(d: Dialogue, answer_format: str = "option") -> str:
    """The training target: the answer's option (`format_option` of the right choice)."""
    return format_option(d.answer_choice, answer_format, d)


def answer_part(generated: str, answer_format: str) -> str:
    """The part of a generated answer that names the option: all of it, or in format `evidence` what follows the
    last ` -> ` (the evidence before it names objects too, and is not the answer)."""
    if answer_format != "evidence":
        return generated
    return generated.rsplit(EVIDENCE_ARROW.strip(), 1)[-1]


def permute_choices(d: Dialogue, shift: int = 1) -> Dialogue:
    """The same dialogue with the options rotated by `shift` under fixed labels: the option that was under label i
    moves to label i + shift (mod 4), and the answer label follows its option. For position-bias checks."""
    n = len(d.choices)
    labels = [c.label for c in d.choices]
    moved = [replace(d.choices[(i - shift) % n], label=labels[i]) for i in range(n)]
    answer_text = d.answer_choice.text
    answer = next(c.label for c in moved if c.text == answer_text)
    return replace(d, choices=moved, answer=answer)
