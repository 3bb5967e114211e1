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
