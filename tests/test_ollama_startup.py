"""The ollama teacher checks its server before any sample: a server that lacks the model, or no server at all, stops
generate_reminder_data at once with one line naming the host, the model and the fix (exit code 2), instead of
three failed tries per sample (about 21 hours for 50k samples on a compute node where 127.0.0.1 serves nothing).

Run: pytest tests/test_ollama_startup.py
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _fake_http import FakeServer, JsonHandler
from _reminder_fixtures import PROMPTS

from mmemory.reminder.prompts import PromptBook
from mmemory.reminder.teachers import (OllamaTeacher, TeacherError, TeacherUnavailableError, check_ollama,
                                       make_teacher, ollama_host)


class _TagsHandler(JsonHandler):
    def do_GET(self):
        if self.path != "/api/tags":
            return self.send_json(404, b"{}")
        body = {"models": [{"name": m, "model": m, "modified_at": "2025-01-01T00:00:00Z", "size": 1,
                            "digest": "0" * 64, "details": {}} for m in self.fake.models]}
        self.send_json(200, json.dumps(body).encode())

    def do_POST(self):
        self.fake.chats += 1
        self.send_json(500, b'{"error":"not in this test"}')


class TagsServer(FakeServer):
    """Answers GET /api/tags with the given model names, as an Ollama server does; counts /api/chat calls."""

    def __init__(self, models):
        self.models, self.chats = list(models), 0
        self.start(_TagsHandler)


@pytest.fixture
def book():
    return PromptBook(Path(PROMPTS["instruction"]).read_text(), [])


@pytest.fixture
def tags_server():
    servers = []

    def make(models):
        servers.append(TagsServer(models))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def cfg(host, model="gemma3:27b"):
    return {"backend": "ollama", "host": host, "model": model, "timeout_s": 5}


def test_a_server_without_the_model_is_refused_naming_host_model_and_fix(tags_server, book):
    srv = tags_server(["llama3.2:1b", "gemma3:4b"])
    with pytest.raises(TeacherUnavailableError) as e:
        make_teacher(cfg(srv.host), book)
    msg = str(e.value)
    assert srv.host in msg and "'gemma3:27b'" in msg and "ollama pull gemma3:27b" in msg and "gemma3:4b" in msg
    assert "\n" not in msg and srv.chats == 0  # one line, and no sample was sent
    assert isinstance(e.value, ValueError) and isinstance(e.value, TeacherError)  # InputError: exit 2, no traceback


def test_no_server_is_refused_with_where_to_run_it(book):
    with pytest.raises(TeacherUnavailableError, match=r"127\.0\.0\.1:9: no Ollama server answers.*compute node"):
        make_teacher(cfg("http://127.0.0.1:9"), book)


def test_a_server_with_the_model_passes_and_tags_are_normalised(tags_server, book):
    srv = tags_server(["gemma3:27b", "llava:latest"])
    teacher = make_teacher(cfg(srv.host), book)
    assert isinstance(teacher, OllamaTeacher) and teacher.host == srv.host
    check_ollama(teacher.client, srv.host, "llava")  # "llava" is "llava:latest"


def test_host_null_is_ollama_host_then_localhost(monkeypatch):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert ollama_host(None) == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "http://login01:11434")
    assert ollama_host(None) == "http://login01:11434"
    assert ollama_host("http://gpu07:11434") == "http://gpu07:11434"


def test_the_workflow_job_ends_in_one_line_with_exit_code_2(tags_server, tmp_path):
    """generate_reminder_data's script path: the stage function with a server that lacks the model, under the
    package's log setup, exits 2 with one error line and no traceback."""
    srv = tags_server(["gemma3:4b"])
    code = f"""
import sys
from mmemory.io import setup_logging
setup_logging({str(tmp_path / 'job.log')!r})
from mmemory.reminder.teachers import make_teacher
from mmemory.reminder.prompts import PromptBook
make_teacher({cfg(srv.host)!r}, PromptBook("x", []))
print("not reached")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "not reached" not in out
    log = (tmp_path / "job.log").read_text()
    errors = [line for line in log.splitlines() if "has no model 'gemma3:27b'" in line]
    assert len(errors) == 1 and "Traceback" not in log, log
