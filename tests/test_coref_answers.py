"""coref answer parsing: a generated answer -> label (object-level) and exact match, in English and Korean,
including the seed's long-winded 8B-Instruct answers and answers that list several options.
Run: pytest tests/test_coref_answers.py"""
from __future__ import annotations

import pytest

from mmemory.coref.answers import parse_answer
from mmemory.coref.data import Choice

EN = [Choice("A", "1", "laptop", "the laptop in A's photo"), Choice("B", "1", "headphones", "the headphones in A's photo"),
      Choice("C", "2", "book", "the book in B's photo"), Choice("D", "2", "cup", "the cup in B's photo")]
KO = [Choice("A", "1", "노트북", "A가 올린 사진 속 노트북"), Choice("B", "1", "헤드폰", "A가 올린 사진 속 헤드폰"),
      Choice("C", "2", "책", "B가 올린 사진 속 책"), Choice("D", "2", "완성된 요리", "B가 올린 사진 속 완성된 요리")]
ALL_EN = "A) the laptop in A's photo B) the headphones in A's photo C) the book in B's photo D) the cup in B's photo"


@pytest.mark.parametrize("answer, label, exact, how", [
    ("D", "D", False, "label"),
    ("D.", "D", False, "label"),
    ("(D)", "D", False, "label"),
    ("D) the cup in B's photo", "D", True, "label"),
    ("D) the cup", "D", False, "label"),
    ("Answer: D", "D", False, "declared"),
    ("Answer: D) the cup in B's photo", "D", True, "declared"),
    ("The answer is D.", "D", False, "declared"),
    ("the cup in B's photo", "D", True, "words"),
    ("The Cup  in B's photo.", "D", True, "words"),
    ("I think they mean the cup in B's photo, since B kept talking about coffee.", "D", True, "words"),
    ("I think it is the cup.", "D", False, "object"),
    ("Answer: A cup in B's photo", "D", False, "object"),  # "A" here is an article, not a label
    ("D) the cup in B's photo D) the cup in B's photo", "D", False, "label"),  # repeated: not exact
    (ALL_EN, None, False, "several options"),  # all four listed: no choice
    ("C or D", None, False, "no option"),
    ("C) the book in B's photo, or D) the cup in B's photo", None, False, "several options"),
    ("Answer: D) the cup in B's photo. Not C) the book in B's photo.", "D", False, "declared"),
    ("", None, False, "no option"),
    ("I am not sure.", None, False, "no option"),
])
def test_english(answer, label, exact, how):
    got = parse_answer(answer, EN)
    assert (got.label, got.exact, got.how) == (label, exact, how)
    assert got.failed == (label is None)


@pytest.mark.parametrize("answer, label, exact", [
    ("정답: D) B가 올린 사진 속 완성된 요리", "D", True),
    ("정답: D", "D", False),
    ("정답은 D입니다.", "D", False),
    ("D) B가 올린 사진 속 완성된 요리", "D", True),
    ("B가 올린 사진 속 완성된 요리", "D", True),
    # the seed's 8B-Instruct examples (예시 1): long-winded, but naming option D once in its words
    ("마지막 A의 발화에서 '저거'는 B가 올린 사진에 포함된 완성된 요리에 대한 언급입니다. "
     "따라서 정답은 D) B가 올린 사진 속 완성된 요리입니다.", "D", True),
    # a speaker letter followed by a particle is no label
    ("정답: B가 올린 사진 속 책", "C", True),
    ("D) B가 올린 사진 속 완성된 요리\nD) B가 올린 사진 속 완성된 요리", "D", False),
    ("A) A가 올린 사진 속 노트북\nB) A가 올린 사진 속 헤드폰\nC) B가 올린 사진 속 책\nD) B가 올린 사진 속 완성된 요리",
     None, False),
])
def test_korean(answer, label, exact):
    got = parse_answer(answer, KO)
    assert (got.label, got.exact) == (label, exact)


def test_second_seed_example_and_dict_choices():
    choices = [{"label": lab, "photo_id": p, "object": o, "text": t} for lab, p, o, t in [
        ("A", "1", "털실", "A가 올린 사진 속 털실"), ("B", "1", "바늘", "A가 올린 사진 속 바늘"),
        ("C", "2", "가위", "B가 올린 사진 속 가위"), ("D", "2", "손뜨개 작품", "B가 올린 사진 속 손뜨개 작품")]]
    answer = ("마지막 A의 발화에서 '저거'는 B가 올린 사진에 포함된 손뜨개 작품을 가리키는 것으로 보입니다. "
              "따라서 정답은 D) B가 올린 사진 속 손뜨개 작품입니다.")
    got = parse_answer(answer, choices)
    assert got.label == "D" and got.exact


def test_a_choice_text_inside_another_is_not_counted_twice():
    choices = [Choice("A", "1", "cup", "the cup"), Choice("B", "1", "red cup", "the red cup"),
               Choice("C", "2", "book", "the book"), Choice("D", "2", "lamp", "the lamp")]
    got = parse_answer("the red cup", choices)
    assert (got.label, got.exact) == ("B", True)
