"""Bad input to `python -m mmemory.memory`, one probe per test: a malformed last line of an evaluate input is an
error unless --tolerate-torn-tail says so, forget refuses a threshold outside (0, 1) and a strength of 0 hours
(and deletes nothing), bad option values are argparse errors with exit 2, and `add --jsonl` is idempotent: a
re-import after a kill adds only what is missing.

    pytest tests/test_bad_input_memory.py -q
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder  # noqa: E402

from mmemory.memory import MemoryStore  # noqa: E402
from mmemory.memory import __main__ as cli  # noqa: E402
from mmemory.memory import store as store_mod  # noqa: E402
from mmemory.memory.store import MemoryInputError, import_turns  # noqa: E402

from test_memory_faults import QUERY, TURN, _one_error_line  # noqa: E402


@pytest.fixture
def fake_encoder(monkeypatch):
    monkeypatch.setattr(cli, "_encoder", lambda args: FakeEncoder())


def _sessions(tmp_path: Path, n_queries: int = 34) -> tuple[Path, Path]:
    turns = tmp_path / "turns.jsonl"
    queries = tmp_path / "queries.jsonl"
    turns.write_text(json.dumps(TURN) + "\n" + json.dumps({**TURN, "turn_id": "t2", "text": "a red circle"}) + "\n")
    queries.write_text("".join(json.dumps({**QUERY, "query_id": f"q{i}"}) + "\n" for i in range(n_queries)))
    return turns, queries


# ----------------------------------------------------------------------------------------- evaluate: a bad last line

def test_evaluate_refuses_a_malformed_last_line(tmp_path, capsys, fake_encoder):
    """The probe: a bad last line was taken for a torn write: a warning, exit 0, and 33 of 34 queries scored."""
    turns, queries = _sessions(tmp_path)
    with open(queries, "a") as f:
        f.write('{"query_id": "q34", "session_id": "s", "timestamp": "2024-01-02T00:00:00Z", "question": "ok?"')
    out = tmp_path / "m.json"
    argv = ["evaluate", "--turns", str(turns), "--queries", str(queries), "--out", str(out),
            "--workdir", str(tmp_path / "w"), "--methods", "rel:relevance=1"]
    assert cli.main(argv) == 2 and not out.exists()
    _one_error_line(capsys.readouterr().err, f"{queries}:35", "not valid JSON", "last line", "--tolerate-torn-tail")
    assert cli.main([*argv, "--tolerate-torn-tail"]) == 0  # the user says the file was cut short by a kill
    assert json.loads(out.read_text())["queries"] == 34


# ------------------------------------------------------------------------------------------------- forget: ranges

def _store_with_memories(path: Path, n: int = 3) -> None:
    with MemoryStore(path, dim=64) as s:
        s.add_many([{"text": f"memory {i}", "vector": np.eye(64)[i], "timestamp": 1e9, "saliency": 5}
                    for i in range(n)])


@pytest.mark.parametrize("argv,needle", [
    (["--threshold", "2", "--dry-run"], "threshold 2.0 must be between 0 and 1"),
    (["--threshold", "2"], "threshold 2.0 must be between 0 and 1"),
    (["--threshold", "0"], "threshold 0.0 must be between 0 and 1"),
    (["--strength-hours", "0"], "strength_hours 0.0 must be a number of hours above 0"),
    (["--strength-hours", "-5"], "strength_hours -5.0"),
    (["--strength-hours", "nan"], "strength_hours nan"),
])
def test_forget_refuses_out_of_range_settings_and_deletes_nothing(argv, needle, tmp_path, capsys):
    path = tmp_path / "mem"
    _store_with_memories(path)
    assert cli.main(["forget", str(path), *argv]) == 2
    _one_error_line(capsys.readouterr().err, needle, "Fix:")
    with MemoryStore(path, readonly=True) as s:
        assert len(s) == 3


def test_forget_in_range_still_works(tmp_path, capsys):
    path = tmp_path / "mem"
    _store_with_memories(path)
    assert cli.main(["forget", str(path), "--threshold", "0.5", "--strength-hours", "1",
                     "--now", "2030-01-01T00:00:00Z"]) == 0
    assert json.loads(capsys.readouterr().out)["forgotten"] == [1, 2, 3]


def test_forget_ranges_are_checked_in_the_library_too(tmp_path):
    path = tmp_path / "mem"
    _store_with_memories(path)
    with MemoryStore(path) as s:
        with pytest.raises(MemoryInputError, match="threshold"):
            s.forget(threshold=1.0, dry_run=True)
        with pytest.raises(MemoryInputError, match="strength_hours"):
            s.forget(strength_hours=0)
        assert len(s) == 3


# ---------------------------------------------------------------------------------------------- bad option values

@pytest.mark.parametrize("argv,needle", [
    (["search", "{store}", "--text", "x", "--weights", "relevance"], "argument --weights"),
    (["search", "{store}", "--text", "x", "-k", "0"], "argument -k"),
    (["search", "{store}", "--text", "x", "--half-life", "0"], "argument --half-life"),
    (["evaluate", "--turns", "t", "--queries", "q", "--out", "o", "--methods", "full"], "argument --methods"),
])
def test_bad_option_values_are_argparse_errors_with_exit_2(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([a.replace("{store}", str(tmp_path / "mem")) for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ add --jsonl: idempotent

def _turns_file(path: Path, n: int, with_ids: bool = True) -> Path:
    rows = [{"session_id": f"s{i % 3}", "timestamp": f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "speaker": "user",
             "text": f"turn {i} about topic {i % 7}", **({"turn_id": f"D{i // 10}:{i % 10}"} if with_ids else {})}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("with_ids", [True, False], ids=["session-turn key", "content hash"])
def test_reimport_after_a_kill_adds_only_what_is_missing(with_ids, tmp_path, monkeypatch):
    """The probe: re-importing the same JSONL after a kill duplicated committed rows (6,536 rows for 5,000)."""
    src = _turns_file(tmp_path / "turns.jsonl", 50, with_ids)
    path = tmp_path / "mem"
    real, calls = store_mod.MemoryStore._add_batch, []

    def dies_on_the_third_batch(self, items, offset, **kw):
        calls.append(len(items))
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill between two committed batches
        return real(self, items, offset, **kw)

    monkeypatch.setattr(store_mod.MemoryStore, "_add_batch", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        with MemoryStore(path, encoder=FakeEncoder()) as s:
            import_turns(s, src, batch_size=10)
    monkeypatch.setattr(store_mod.MemoryStore, "_add_batch", real)
    with MemoryStore(path, encoder=FakeEncoder()) as s:
        assert len(s) == 20  # two whole batches committed
        got = import_turns(s, src, batch_size=10)
        assert got == {"read": 50, "added": 30, "already_in_store": 20, "repeated_in_file": 0}
        assert len(s) == 50 and len({m.source for m in s.memories()}) == 50
        assert import_turns(s, src, batch_size=10)["added"] == 0  # a third run adds nothing
        assert len(s) == 50


def test_add_jsonl_from_the_command_line_is_idempotent(tmp_path, capsys, fake_encoder):
    src = _turns_file(tmp_path / "turns.jsonl", 12)
    path = tmp_path / "mem"
    assert cli.main(["add", str(path), "--jsonl", str(src)]) == 0
    assert json.loads(capsys.readouterr().out) == {"read": 12, "added": 12, "already_in_store": 0,
                                                   "repeated_in_file": 0}
    assert cli.main(["add", str(path), "--jsonl", str(src)]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 0
    assert cli.main(["add", str(path), "--jsonl", str(src), "--text", "x"]) == 2
    _one_error_line(capsys.readouterr().err, "--jsonl", "--text")


def test_add_jsonl_refuses_a_repeated_turn_and_a_row_without_fields(tmp_path, capsys, fake_encoder):
    src = tmp_path / "turns.jsonl"
    src.write_text(json.dumps(TURN) + "\n" + json.dumps({**TURN, "text": "other"}) + "\n")
    assert cli.main(["add", str(tmp_path / "mem"), "--jsonl", str(src)]) == 2
    _one_error_line(capsys.readouterr().err, str(src), "row 2 repeats turn_id 't1'")
    src.write_text(json.dumps({"session_id": "s", "text": "no time"}) + "\n")
    assert cli.main(["add", str(tmp_path / "mem2"), "--jsonl", str(src)]) == 2
    _one_error_line(capsys.readouterr().err, str(src), "row 1 lacks ['timestamp', 'speaker']")
