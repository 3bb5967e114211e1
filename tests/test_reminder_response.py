"""Response parsing: strict teacher validation and the evaluation's final answer.

Run: pytest tests/test_reminder_response.py
"""
import pytest

from mmemory.reminder.response import final_answer, validate_response


@pytest.mark.parametrize("response, answer, status", [
    ("<reminder>a red light</reminder>\nThe light is red.", "The light is red.", "ok"),
    ("<reminder>x</reminder>\n  two \n\n dogs  <end_of_turn>", "two dogs", "ok"),
    ("<reminder>x</reminder> a <reminder>y</reminder> b", "b", "ok"),  # after the LAST </reminder>
    ("<reminder>cut off by max_new_tokens", "", "no_final_answer"),
    ("<reminder>x</reminder>   ", "", "no_final_answer"),
    ("", "", "no_final_answer"),
    ("yes, two", "yes, two", "no_reminder"),
    ("<Reminder>x</REMINDER>red", "red", "ok"),
])
def test_final_answer(response, answer, status):
    assert final_answer(response) == (answer, status)


@pytest.mark.parametrize("response, problem", [
    ("<reminder>Turn 2: is it red? yes.</reminder>\nyes", None),
    ("  <reminder>r</reminder>\nanswer  ", None),
    ("", "empty response"),
    ("no tags at all", "exactly one"),
    ("<reminder>a</reminder><reminder>b</reminder> c", "exactly one"),
    ("<reminder>unclosed", "exactly one"),
    ("Sure! <reminder>a</reminder> b", "text before"),
    ("<reminder>   </reminder> b", "empty reminder"),
    ("<reminder>a</reminder>\n  ", "no final answer"),
])
def test_validate_response(response, problem):
    got = validate_response(response)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


@pytest.mark.parametrize("response, answer", [
    ("<reminder>x</reminder> yes </remind", "yes"),  # the generation limit cut a tag
    ("<reminder>x</reminder> yes <remi", "yes"),
    ("<reminder>x</reminder> two dogs <end_of_tu", "two dogs"),
    ("<reminder>x</reminder> red </", "red"),
    ("<reminder>x</reminder> red <", "red"),
    ("<reminder>x</reminder>inder> yes", "yes"),  # the tail of a tag whose start was lost
    ("<reminder>x</reminder> _of_turn> red", "red"),
    ("<reminder>x</reminder> no <|eot_id|> <|eot", "no"),  # Llama-3 control tokens, whole and cut
    ("<reminder>x</reminder> a <remind b", "a b"),  # a fragment in the middle
    ("<reminder>x</reminder> yes <end_of_turn>\n<start_of_tu", "yes"),
])
def test_final_answer_drops_broken_tag_fragments(response, answer):
    assert final_answer(response) == (answer, "ok")


@pytest.mark.parametrize("text", [
    "there are 3 < 5 shapes", "x < y", "the eraser is red", "reminder: it is red", "the eos is there",
    "i think so", "yes, two dogs",
])
def test_fold_keeps_text_that_only_looks_like_a_tag(text):
    from mmemory.reminder.response import fold

    assert fold(text) == text


def test_fragment_only_response_has_no_final_answer():
    assert final_answer("<reminder>x</reminder> </remind") == ("", "no_final_answer")
    assert final_answer("<end_of_tu") == ("", "no_final_answer")
