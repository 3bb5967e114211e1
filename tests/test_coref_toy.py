"""coref toy generator: valid schema, deterministic by seed, balanced letters; baselines that ignore the dialogue
score near chance (0.25 object-level, 0.5 photo-level) while a rule reading the dialogue scores 1.0.
Run: pytest tests/test_coref_toy.py"""
from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from mmemory.coref.data import split_dialogues, validate_dialogues
from mmemory.coref.toy import LABELS, PRAISE_WORDS, make_toy_dialogues, most_recent_mention, resolve_by_rule

N = 400


@pytest.fixture(scope="module")
def dialogues():
    items = make_toy_dialogues(5 * N, seed=0)  # the protocol's 80/20 split leaves N for test
    return validate_dialogues(items, strict=True)[0]


def scores(dialogues, predict) -> tuple[float, float]:
    """(object-level, photo-level) accuracy of `predict(dialogue) -> label or None` (None scores wrong)."""
    obj = photo = 0
    for d in dialogues:
        label = predict(d)
        chosen = next((c for c in d.choices if c.label == label), None)
        obj += chosen is not None and chosen.label == d.answer
        photo += chosen is not None and chosen.photo_id == d.answer_choice.photo_id
    return obj / len(dialogues), photo / len(dialogues)


def test_schema_determinism_and_balance():
    a, b, c = make_toy_dialogues(N, seed=5), make_toy_dialogues(N, seed=5), make_toy_dialogues(N, seed=6)
    assert a == b and a != c
    dialogues, report = validate_dialogues(a, strict=True)
    assert report.n_kept == N
    assert set(Counter(d.answer for d in dialogues).values()) == {N // 4}
    # shuffled choice order: the answer's object is at each letter, from each photo, about equally often
    assert Counter((d.answer, d.answer_choice.photo_id) for d in dialogues).keys() == {
        (lab, p) for lab in LABELS for p in ("1", "2")}
    for d in dialogues:
        assert [t.speaker for t in d.turns if t.photo] == ["A", "B"]
        assert all(len(t.photo.objects) == 2 for t in d.turns if t.photo)
        assert len({c.object for c in d.choices}) == 4
        assert "that" in d.turns[-1].text and d.turns[-1].photo is None


def test_referent_is_not_given_by_a_position_or_a_prior(dialogues):
    final_speaker_photo = Counter(d.photos[d.answer_choice.photo_id][0] == d.turns[-1].speaker for d in dialogues)
    assert abs(final_speaker_photo[True] / len(dialogues) - 0.5) < 0.06  # own photo or the other's: a coin
    within = Counter(d.photos[d.answer_choice.photo_id][1].objects.index(d.answer_choice.object) for d in dialogues)
    assert abs(within[0] / len(dialogues) - 0.5) < 0.06  # first or second object of its photo: a coin


def test_baselines_that_ignore_the_dialogue_score_near_chance(dialogues):
    splits = split_dialogues(dialogues, test_share=0.2, val_share_of_train=0.1, seed=0)
    train, test = splits["train"], splits["test"]
    assert len(test) == N
    rng = random.Random(0)
    top_letter = Counter(d.answer for d in train).most_common(1)[0][0]
    baselines = {
        "random": lambda d: rng.choice(LABELS),
        "most frequent train letter": lambda d: top_letter,
        "always first photo": lambda d: next(c.label for c in d.choices if c.photo_id == d.turns[1].photo.photo_id),
        "most recently mentioned object": most_recent_mention,
    }
    got = {name: scores(test, f) for name, f in baselines.items()}
    print({k: (round(o, 3), round(p, 3)) for k, (o, p) in got.items()})
    for name, (obj, photo) in got.items():
        assert abs(obj - 0.25) < 0.06, (name, obj)
        assert abs(photo - 0.5) < 0.08, (name, photo)
    assert scores(test, resolve_by_rule) == (1.0, 1.0)


def last_praised_by_anyone(d):
    """The praise rule without the speakers: the object of the last praise before the final turn."""
    for t in reversed([t for t in d.turns if t.photo is None][:-1]):
        if any(w in t.text.lower() for w in PRAISE_WORDS):
            named = [c for c in d.choices if re.search(rf"\b{c.object}\b", t.text, re.IGNORECASE)]
            if named:
                return named[0].label
    return None


@pytest.mark.parametrize("rule", ["praise", "attribute"])
def test_each_rule_alone_is_recoverable_and_shortcuts_are_not_enough(rule):
    dialogues = validate_dialogues(make_toy_dialogues(N, seed=1, rules=(rule,)), strict=True)[0]
    assert scores(dialogues, resolve_by_rule)[0] == 1.0
    assert scores(dialogues, most_recent_mention)[0] < 0.35
    # who praised matters: ignoring the speakers is no better than chance
    assert scores(dialogues, last_praised_by_anyone)[0] < 0.35


def test_unknown_rule_is_an_error():
    with pytest.raises(ValueError, match="choose from"):
        make_toy_dialogues(4, rules=("position",))
