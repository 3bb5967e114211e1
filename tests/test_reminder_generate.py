"""generate_reminder_data with the template teacher: output shape, validation/rejects, resume after a kill,
restart when the teacher settings change; and the transformers teacher on a tiny local checkpoint.

Run: pytest tests/test_reminder_generate.py
"""
import json

import pytest
from _reminder_fixtures import PROMPTS, shared_world

from mmemory.io import read_jsonl
from mmemory.reminder.generate import generate_reminder_data
from mmemory.reminder.prompts import PromptBook, training_samples
from mmemory.reminder.response import validate_response
from mmemory.reminder.stage import run_generate
from mmemory.reminder.teachers import TeacherError, TemplateTeacher, TransformersTeacher, make_teacher
from mmemory.visdial import load_visdial


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_world()


@pytest.fixture(scope="module")
def samples(world):
    return training_samples(load_visdial(world["train"]), 2, seed=0, include_last=True)


def test_template_teacher_reminds_and_concludes_with_the_held_out_answer(samples):
    teacher = TemplateTeacher(quote="turn")
    for s in samples:
        r = teacher.respond(s)
        assert validate_response(r) is None
        reminder, answer = r.split("</reminder>\n")
        assert answer == s.target and s.target not in s.conversation.splitlines()[-1]
        if s.round > 1:
            assert reminder.startswith("<reminder>Turn ") and f"Turn {s.round}" not in reminder
        else:
            assert reminder == "<reminder>No earlier turns."
    assert [teacher.respond(s) for s in samples] == [TemplateTeacher(quote="turn").respond(s) for s in samples]


def test_related_turn_is_quoted():
    from mmemory.reminder.prompts import Sample

    s = Sample(1, 3, "Q: is there a red circle?\nA: yes\nQ: is anything blue?\nA: no\nQ: where is the red circle?",
               "where is the red circle?", "on the left")
    assert TemplateTeacher(quote="turn").respond(s) == ("<reminder>Turn 1: is there a red circle? yes.</reminder>\n"
                                            "on the left")
    assert TemplateTeacher(quote="answer").respond(s) == "<reminder>Turn 1: yes.</reminder>\non the left"
    with pytest.raises(TeacherError):
        TemplateTeacher(quote="everything")


def test_an_earlier_picture_question_is_reminded_of_that_picture():
    """The answer is in an earlier session's picture, not in a turn of this dialogue: the reminder recalls the
    picture (object, then place), and the same question about the current picture still quotes a turn."""
    from mmemory.reminder.prompts import Sample

    q = "in the earlier picture, where was the green triangle?"
    s = Sample(7, 2, f"Q: is anything green?\nA: no\nQ: {q}", q, "at the top left", asks_about=3)
    r = TemplateTeacher(quote="turn").respond(s)
    assert r == "<reminder>earlier picture: the green triangle was at the top left.</reminder>\nat the top left"
    assert validate_response(r) is None
    current = Sample(7, 2, s.conversation, q, "at the top left")
    assert TemplateTeacher(quote="turn").respond(current).startswith("<reminder>Turn 1: ")


class Flaky:
    """Invalid on the first try for even image ids; always invalid for image ids divisible by 3."""

    name = "flaky"

    def __init__(self):
        self.calls = {}

    def respond(self, s):
        n = self.calls[s.key] = self.calls.get(s.key, 0) + 1
        if s.image_id % 3 == 0 or (s.image_id % 2 == 0 and n == 1):
            return "I think the answer is yes."
        return TemplateTeacher(quote="turn").respond(s)


def test_invalid_responses_are_retried_then_rejected(samples, tmp_path):
    teacher = Flaky()
    stats = generate_reminder_data(samples, teacher, tmp_path / "d.jsonl", tmp_path / "r.jsonl", tmp_path / "p",
                                   "fp", max_attempts=2)
    rejected = {s.key for s in samples if s.image_id % 3 == 0}
    assert stats["rejected"] == len(rejected) and stats["accepted"] == len(samples) - len(rejected)
    rej = read_jsonl(tmp_path / "r.jsonl")
    assert all("invalid response after 2 attempt(s): expected exactly one" in r["reason"] for r in rej)
    assert all(r["response"] == "I think the answer is yes." for r in rej)
    assert all(teacher.calls[k] == 2 for k in rejected)


class Counting(TemplateTeacher):
    def __init__(self, die_at: int | None = None):
        super().__init__()
        self.n, self.die_at = 0, die_at

    def respond(self, s):
        self.n += 1
        if self.n == self.die_at:
            raise KeyboardInterrupt("killed")
        return super().respond(s)


def test_resume_skips_finished_keys_and_survives_a_torn_line(samples, tmp_path):
    args = (tmp_path / "d.jsonl", tmp_path / "r.jsonl", tmp_path / "p", "fp1")
    with pytest.raises(KeyboardInterrupt):  # killed while asking for the 6th sample
        generate_reminder_data(samples, Counting(die_at=6), *args)
    progress = tmp_path / "p" / "responses.jsonl"
    with open(progress, "a") as f:
        f.write('{"key": "torn mid-wri')  # a kill during the append
    second = Counting()
    stats = generate_reminder_data(samples, second, *args)
    assert second.n == len(samples) - 5 and stats["resumed"] == 5
    rows = read_jsonl(tmp_path / "d.jsonl")
    assert [(r["image_id"], r["round"]) for r in rows] == [(s.image_id, s.round) for s in samples]
    assert all(json.loads(line) for line in progress.read_text().splitlines())  # the torn line is gone
    again = Counting()
    generate_reminder_data(samples, again, *args)
    assert again.n == len(samples)  # a finished run's progress does not satisfy a rerun (output missing or forced)
    with pytest.raises(KeyboardInterrupt):
        generate_reminder_data(samples, Counting(die_at=3), *args)
    third = Counting()
    generate_reminder_data(samples, third, tmp_path / "d.jsonl", tmp_path / "r.jsonl", tmp_path / "p", "fp2")
    assert third.n == len(samples)  # other settings: start over (the old progress is kept aside)
    assert len(list((tmp_path / "p").glob("responses.stale-*.jsonl"))) == 1  # one per old fingerprint (fp1)


def test_run_generate_stage(world, tmp_path):
    out = {k: str(tmp_path / f"{k}.json") for k in ("data", "rejects", "metrics")}
    cfg = {"backend": "template", "rounds_per_dialog": 1, "concurrency": 2, "max_attempts": 2, "backoff_s": 0}
    m = run_generate(world["train"], cfg, PROMPTS, out, str(tmp_path / "progress"))
    assert m["accepted"] == 8 and m["rejected"] == 0 and m["teacher"] == "template"
    assert all(r["round"] == 10 for r in read_jsonl(out["data"]))


def test_transformers_teacher_on_a_local_checkpoint(world, samples):
    book = PromptBook.load(PROMPTS["instruction"], PROMPTS["fewshot"], 1)
    teacher = make_teacher({"backend": "transformers", "model_path": world["vlm"], "max_new_tokens": 8}, book)
    assert isinstance(teacher, TransformersTeacher)
    text = teacher.respond(samples[0])  # an untrained tiny model: text, but not a valid reminder
    assert isinstance(text, str) and validate_response(text) is not None
    with pytest.raises(TeacherError, match="does not exist"):
        make_teacher({"backend": "transformers", "model_path": "/nonexistent"}, book)
    with pytest.raises(TeacherError, match="unknown"):
        make_teacher({"backend": "gpt"}, book)
