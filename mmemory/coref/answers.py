"""A generated answer -> the choice it picks (object-level scoring) and whether it is an exact match.

- `label`: the one choice the answer picks, or None (a parse failure, scored wrong, never dropped). A declared answer
  ("정답: D", "정답은 D입니다", "Answer: D", "the answer is D") decides; otherwise the answer must name exactly one
  choice, by its label ("D", "D) ...", "(D)") or in its words (the choice's text; failing that, its object alone when
  no other choice has that object). An answer that names several choices and declares none picks none.
- `exact`: the seed's "exact match": the answer names exactly one option in its words, once: that choice's text
  appears exactly once, no other choice's text or label appears, and it is the picked label. "D" alone picks D but is
  not exact; a repeated option or a list of all four is not exact.

Matching ignores case and runs of whitespace. Labels are matched case-sensitively (an English "a" is no label).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from mmemory.coref.data import Choice

# what may follow a declared or bracketed label: punctuation, the end, or a Korean copula / counter
_AFTER_LABEL = r"(?=\s*(?:[).,:;!?\]]|$|입니다|이다|이에요|예요|번))"


@dataclass(frozen=True)
class ParsedAnswer:
    label: str | None
    exact: bool
    how: str  # "declared", "label", "words", "object", "several options", "no option"

    @property
    def failed(self) -> bool:
        return self.label is None


def _norm(s: str) -> str:
    return " ".join(s.casefold().split())


def _occurrences(hay: str, needles: dict[str, str]) -> dict[str, int]:
    """Non-overlapping occurrences of each needle (longest needles claim their spans first)."""
    taken = [False] * len(hay)
    counts = {k: 0 for k in needles}
    for key, needle in sorted(needles.items(), key=lambda kv: -len(kv[1])):
        if not needle:
            continue
        start = 0
        while (i := hay.find(needle, start)) >= 0:
            if not any(taken[i:i + len(needle)]):
                counts[key] += 1
                for j in range(i, i + len(needle)):
                    taken[j] = True
            start = i + 1
    return counts


def parse_answer(answer: str, choices: Iterable[Choice | dict]) -> ParsedAnswer:
    """Parse one generated answer against its dialogue's choices (see the module docstring)."""
    choices = [c if isinstance(c, Choice) else Choice(**c) for c in choices]
    labels = [c.label for c in choices]
    text = answer if isinstance(answer, str) else ""
    lab = "|".join(re.escape(x) for x in sorted(labels, key=len, reverse=True))
    if not text.strip() or not labels:
        return ParsedAnswer(None, False, "no option")

    declared = re.findall(rf"(?:정답|answer)\s*(?:은|는|is|:)?\s*:?\s*\(?({lab})(?:\)|{_AFTER_LABEL})",
                          text, flags=re.IGNORECASE)
    # the label as written: `D)` / `(D)` anywhere, or the whole answer being one label
    marked = re.findall(rf"(?<![A-Za-z0-9])\(?({lab})\)", text)
    whole = re.fullmatch(rf"\s*\(?({lab})\)?[.!]?\s*", text)
    if whole:
        marked.append(whole.group(1))

    hay = _norm(text)
    words = _occurrences(hay, {c.label: _norm(c.text) for c in choices})
    in_words = [k for k, n in words.items() if n]
    named = set(marked) | set(in_words)

    if declared and len(set(declared)) == 1:
        label, how = declared[0], "declared"
    elif declared:
        return ParsedAnswer(None, False, "several options")
    elif len(named) == 1:
        label = next(iter(named))
        how = "label" if marked else "words"
    elif len(named) > 1:
        return ParsedAnswer(None, False, "several options")
    else:
        objects = [c.object for c in choices]
        hits = _occurrences(hay, {c.label: _norm(c.object) for c in choices if objects.count(c.object) == 1})
        found = [k for k, n in hits.items() if n]
        if len(found) == 1:
            return ParsedAnswer(found[0], False, "object")
        return ParsedAnswer(None, False, "several options" if found else "no option")

    exact = (in_words == [label] and words[label] == 1 and set(marked) <= {label} and len(marked) <= 1
             and set(declared) <= {label})
    return ParsedAnswer(label, exact, how)
