"""The ollama teacher against a local HTTP server on 127.0.0.1 that speaks Ollama's /api/chat protocol,
including its failures: slow replies (client timeout), HTTP 500s, malformed bodies, an unknown model.

Run: pytest tests/test_ollama_backend.py
"""
import base64
import json
import threading
import time

import pytest
from _fake_http import FakeServer, JsonHandler
from _reminder_fixtures import PROMPTS

from mmemory.io import read_jsonl
from mmemory.reminder.generate import generate_reminder_data
from mmemory.reminder.prompts import PromptBook, Sample
from mmemory.reminder.teachers import OllamaTeacher, TeacherError, TransientTeacherError

GOOD = "<reminder>Turn 1: is it red? yes.</reminder>\nyes"


class _ScriptedChat(JsonHandler):
    def do_POST(self):
        fake, body = self.fake, self.read_json()
        with fake.lock:
            fake.requests.append((self.path, body))
            action = fake.actions.pop(0) if len(fake.actions) > 1 else fake.actions[0]
        kind, _, arg = action.partition(":")
        if kind == "slow":
            time.sleep(float(arg))
            kind, arg = "ok", GOOD
        if kind == "500":
            return self.send_json(500, b'{"error":"model runner crashed"}')
        if kind == "404":
            return self.send_json(404, b'{"error":"model \\"gemma3:27b\\" not found, try pulling it first"}')
        if kind == "malformed":
            return self.send_json(200, b'{"model": "gemma3:27b", "message": {"role": "assist')
        if kind == "nocontent":
            return self.send_json(200, json.dumps({"model": body["model"], "done": True}).encode())
        reply = {"model": body["model"], "created_at": "2025-01-01T00:00:00Z",
                 "message": {"role": "assistant", "content": arg}, "done": True, "done_reason": "stop"}
        self.send_json(200, json.dumps(reply).encode())


class FakeOllama(FakeServer):
    """A scripted /api/chat server: each request pops the next action (the last one repeats)."""

    def __init__(self, actions):
        self.actions = list(actions)
        self.requests = []
        self.lock = threading.Lock()
        self.start(_ScriptedChat)


@pytest.fixture
def server_factory():
    servers = []

    def make(actions):
        servers.append(FakeOllama(actions))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def book():
    return PromptBook.load(PROMPTS["instruction"], PROMPTS["fewshot"], PROMPTS["max_fewshot"])


@pytest.fixture
def sample(tmp_path):
    from PIL import Image

    img = tmp_path / "toy_train_000000000001.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(img)
    return Sample(1, 2, "Q: is it red?\nA: yes\nQ: is it round?", "is it round?", "yes", str(img))


def test_chat_request_carries_prompt_and_base64_image(server_factory, book, sample):
    srv = server_factory([f"ok:{GOOD}"])
    teacher = OllamaTeacher(book, "gemma3:27b", srv.host, timeout_s=5, options={"temperature": 0})
    assert teacher.respond(sample) == GOOD
    path, body = srv.requests[0]
    assert path == "/api/chat" and body["model"] == "gemma3:27b" and body["stream"] is False
    system, user = body["messages"]
    assert system["role"] == "system" and "<reminder>" in system["content"] and "Examples:" in system["content"]
    assert user["content"] == f"conversation:\n{sample.conversation}"
    assert base64.b64decode(user["images"][0]) == open(sample.image_path, "rb").read()
    assert body["options"]["temperature"] == 0


@pytest.mark.parametrize("action", ["500", "malformed", "nocontent", "slow:2"])
def test_faults_are_transient(server_factory, book, sample, action):
    srv = server_factory([action])
    teacher = OllamaTeacher(book, "gemma3:27b", srv.host, timeout_s=0.5)
    with pytest.raises(TransientTeacherError):
        teacher.respond(sample)


def test_connection_refused_is_transient(book, sample):
    teacher = OllamaTeacher(book, "gemma3:27b", "http://127.0.0.1:9", timeout_s=1)
    with pytest.raises(TransientTeacherError, match="cannot reach"):
        teacher.respond(sample)


def test_unknown_model_is_a_clear_permanent_error(server_factory, book, sample):
    srv = server_factory(["404"])
    with pytest.raises(TeacherError, match="ollama pull gemma3:27b") as e:
        OllamaTeacher(book, "gemma3:27b", srv.host, timeout_s=5).respond(sample)
    assert not isinstance(e.value, TransientTeacherError)


def _samples(sample, n):
    return [Sample(i, 2, sample.conversation, sample.question, "yes", sample.image_path) for i in range(n)]


def test_generation_retries_faults_then_rejects_with_reason(server_factory, book, sample, tmp_path):
    # item order is sequential (concurrency 1): 0 gets 500 then a slow reply then OK; 1 gets a malformed body,
    # then an invalid response, then OK; 2 gets three 500s and is rejected.
    srv = server_factory(["500", "slow:1.5", f"ok:{GOOD}", "malformed", "ok:no tags here", f"ok:{GOOD}",
                          "500", "500", "500", f"ok:{GOOD}"])
    teacher = OllamaTeacher(book, "gemma3:27b", srv.host, timeout_s=0.5)
    waits = []
    stats = generate_reminder_data(_samples(sample, 3), teacher, tmp_path / "out.jsonl", tmp_path / "rej.jsonl",
                                   tmp_path / "progress", "fp1", max_attempts=3, backoff_s=0.25,
                                   sleep=waits.append)
    assert stats == {"samples": 3, "accepted": 2, "rejected": 1, "resumed": 0}
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["image_id"] for r in rows] == [0, 1] and all(r["response"] == GOOD for r in rows)
    assert set(rows[0]) == {"image_id", "round", "conversation", "response"}
    (rej,) = read_jsonl(tmp_path / "rej.jsonl")
    assert rej["image_id"] == 2 and "500" in rej["reason"] and "attempt 3/3" in rej["reason"]
    assert waits == [0.25, 0.5, 0.25, 0.25, 0.5]  # exponential backoff after each server fault


def test_concurrent_generation_and_resume(server_factory, book, sample, tmp_path, monkeypatch):
    from mmemory.reminder.generate import Progress

    srv = server_factory(["slow:0.2"])
    teacher = OllamaTeacher(book, "gemma3:27b", srv.host, timeout_s=5)
    args = (tmp_path / "out.jsonl", tmp_path / "rej.jsonl", tmp_path / "progress", "fp1")

    def killed(self):  # killed after every answer landed, before the run was marked finished
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as mp:
        mp.setattr(Progress, "finish", killed)
        with pytest.raises(KeyboardInterrupt):
            generate_reminder_data(_samples(sample, 6), teacher, *args, concurrency=3)
    assert len(srv.requests) == 6
    stats = generate_reminder_data(_samples(sample, 8), teacher, *args, concurrency=3)
    assert stats["resumed"] == 6 and len(srv.requests) == 8  # only the two new samples were asked
    assert [r["image_id"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(8))
