"""Count parsing of generated answers: digits, English words, Korean, no number, several numbers (the first wins).
Run: pytest tests/test_counting_answers.py"""
import pytest

from mmemory.counting.answers import parse_count
from mmemory.counting.model import answer_text


@pytest.mark.parametrize("text,count", [
    ("12", 12), ("There are 12 people.", 12), ("ASSISTANT: 7", 7), ("0", 0), ("1,200 people", 1200),
    ("about 2.5", 2),
])
def test_digits(text, count):
    assert parse_count(text) == count


@pytest.mark.parametrize("text,count", [
    ("twelve", 12), ("There are Twelve people.", 12), ("twenty-one", 21), ("twenty one people", 21),
    ("ninety-nine", 99), ("forty", 40), ("zero", 0), ("one hundred and five", 105), ("a single person", 1),
    ("no people", 0), ("There are no people in the image.", 0), ("nobody", 0), ("None.", 0), ("no one", 0),
])
def test_english_words(text, count):
    assert parse_count(text) == count


@pytest.mark.parametrize("text,count", [
    ("12명", 12), ("12 명입니다", 12), ("열두 명", 12), ("한 명", 1), ("세 명이 있습니다", 3), ("스무 명", 20),
    ("스물한 명", 21), ("아흔아홉 명", 99), ("두 사람", 2), ("십이 명", 12), ("이십일명", 21), ("다섯", 5), ("열둘", 12),
    ("사람이 없습니다", 0), ("아무도 없어요", 0), ("한 명도 없습니다", 0),
    ("이 사진에는 세 명이 있습니다", 3),  # 이 ("this") is not read as 2
    ("네, 두 명입니다", 2),  # 네 ("yes") without a counter is not 4
])
def test_korean(text, count):
    assert parse_count(text) == count


@pytest.mark.parametrize("text", ["", None, "I cannot tell.", "Many people.", "사람들이 많습니다", "someone is here"])
def test_no_number_is_none(text):
    assert parse_count(text) is None


@pytest.mark.parametrize("text,count", [
    ("3 or 4 people", 3), ("two groups of 5", 2), ("5명, 아니 6명", 5), ("No, there are 3 people", 3),
    ("There are 4 people and twelve bags", 4), ("twelve people, 4 of them sitting", 12),
])
def test_several_numbers_the_first_stated_wins(text, count):
    assert parse_count(text) == count


def test_every_training_answer_parses_back():
    for n in range(101):
        assert parse_count(answer_text(n)) == n
