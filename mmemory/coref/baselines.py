"""Shortcut baselines for the coref task: what surface cues alone get.

A baseline that reads only *where* and *by whom* the objects are mentioned, which letter an option has and whose
photo an object is in, never *what* is said about them. On the toy data (`mmemory.coref.toy`) every such cue is
drawn before the referent, so each should score chance (1/4); on real data they measure how far a model could get
without resolving the pronoun.

- `first_mentioned`: the object named first in the utterances before the final one;
- `most_mentioned`: the object named most often there (ties: the one named first);
- `ShortcutLR`: a scikit-learn logistic regression on shallow per-choice features (`FEATURES`: mention count, first
  and last mention position, which speaker, relative to the final speaker, mentioned it first and last, whether the
  turn before the final one names it, option letter, photo owner), one row per choice, fitted on train only; its
  inverse regularisation C is chosen on val (object accuracy, the first best on ties); the dialogue's pick is the
  choice with the highest score.

    lr = fit_shortcut_lr(train, val)          # train and val dialogues
    labels = lr.predict(test)

An object is "mentioned" in an utterance when its noun (the choice's `object`) appears there as a word.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mmemory.coref.data import Dialogue

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
LETTERS = ("A", "B", "C", "D")
FEATURES = ("mentions", "mentioned", "first position", "last position", "first by final speaker",
            "first by other speaker", "last by final speaker", "last by other speaker", "in the turn before the last",
            "photo of the final speaker", "letter A", "letter B", "letter C", "letter D")


def _mentions(d: Dialogue) -> tuple[list, str, dict[str, list[tuple[int, str]]]]:
    """(utterances before the final one, the final speaker, {object: [(utterance index, speaker)]})."""
    utterances = [t for t in d.turns if t.photo is None]
    final, before = utterances[-1], utterances[:-1]
    found: dict[str, list[tuple[int, str]]] = {c.object: [] for c in d.choices}
    for k, t in enumerate(before):
        for obj in found:
            if re.search(rf"\b{re.escape(obj)}\b", t.text, re.IGNORECASE):
                found[obj].append((k, t.speaker))
    return before, final.speaker, found


def choice_features(d: Dialogue) -> np.ndarray:
    """One row of `FEATURES` per choice, in choice order. Positions are utterance indices scaled to 0..1 (0 when
    the object is never mentioned; `mentioned` tells the two apart)."""
    before, final_speaker, found = _mentions(d)
    scale = max(1, len(before) - 1)
    owners = {pid: speaker for pid, (speaker, _) in d.photos.items()}
    rows = []
    for c in d.choices:
        m = found[c.object]
        first, last = (m[0], m[-1]) if m else (None, None)
        rows.append([
            len(m), float(bool(m)),
            first[0] / scale if m else 0.0, last[0] / scale if m else 0.0,
            float(bool(m) and first[1] == final_speaker), float(bool(m) and first[1] != final_speaker),
            float(bool(m) and last[1] == final_speaker), float(bool(m) and last[1] != final_speaker),
            float(bool(m) and last[0] == len(before) - 1),
            float(owners.get(c.photo_id) == final_speaker),
            *[float(c.label == x) for x in LETTERS],
        ])
    return np.asarray(rows, dtype=float)


def first_mentioned(d: Dialogue) -> str | None:
    """The label of the object named first before the final utterance (None when none is named)."""
    _, _, found = _mentions(d)
    named = [(m[0][0], i) for i, c in enumerate(d.choices) if (m := found[c.object])]
    return d.choices[min(named)[1]].label if named else None


def most_mentioned(d: Dialogue) -> str | None:
    """The label of the object named most often before the final utterance (ties: the one named first)."""
    _, _, found = _mentions(d)
    named = [(-len(m), m[0][0], i) for i, c in enumerate(d.choices) if (m := found[c.object])]
    return d.choices[min(named)[2]].label if named else None


def best_letter(dialogues: Sequence[Dialogue]) -> tuple[str | None, int]:
    """The answer letter most common in `dialogues` themselves and its count: the ceiling of every constant-letter
    prior on that split (no constant letter can do better there)."""
    counts: dict[str, int] = {}
    for d in dialogues:
        counts[d.answer] = counts.get(d.answer, 0) + 1
    if not counts:
        return None, 0
    letter = max(sorted(counts), key=lambda x: counts[x])
    return letter, counts[letter]


def _design(dialogues: Sequence[Dialogue]) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([choice_features(d) for d in dialogues])
    y = np.concatenate([[c.label == d.answer for c in d.choices] for d in dialogues]).astype(int)
    return x, y


@dataclass
class ShortcutLR:
    """A fitted shortcut logistic regression (`fit_shortcut_lr`): the pipeline, C, and val accuracy per C."""

    pipeline: object
    C: float
    val_accuracy: dict[float, float] = field(default_factory=dict)
    n_train: int = 0

    def scores(self, d: Dialogue) -> np.ndarray:
        return self.pipeline.decision_function(choice_features(d))

    def predict(self, dialogues: Sequence[Dialogue]) -> list[str]:
        """Per dialogue, the label of the choice with the highest score (the first on ties)."""
        return [d.choices[int(np.argmax(self.scores(d)))].label for d in dialogues]

    def coefficients(self) -> dict[str, float]:
        lr = self.pipeline[-1]
        return {name: round(float(w), 4) for name, w in zip(FEATURES, lr.coef_[0])}


def _pipeline(C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))


def _accuracy(labels: Sequence[str], dialogues: Sequence[Dialogue]) -> float:
    return sum(lab == d.answer for lab, d in zip(labels, dialogues)) / max(1, len(dialogues))


def fit_shortcut_lr(train: Sequence[Dialogue], val: Sequence[Dialogue], grid: Sequence[float] = C_GRID) -> ShortcutLR:
    """Fit one logistic regression per C in `grid` on `train`'s choices (is this choice the answer?) and keep the C
    with the best object accuracy on `val` (the first on ties). Test is never seen."""
    if not train or not val:
        raise ValueError("fit_shortcut_lr: needs train and val dialogues (C is chosen on val)")
    x, y = _design(train)
    if len(set(y)) < 2:
        raise ValueError("fit_shortcut_lr: the train choices are all of one class")
    best, val_acc = None, {}
    for C in grid:
        fitted = ShortcutLR(_pipeline(C).fit(x, y), C, n_train=len(train))
        val_acc[C] = _accuracy(fitted.predict(val), val)
        if best is None or val_acc[C] > val_acc[best.C]:
            best = fitted
    best.val_accuracy = val_acc
    return best
