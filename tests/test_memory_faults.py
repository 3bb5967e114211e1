"""Fault injection for the memory store: damaged index files, a writer racing a reader, and bad CLI input.

    pytest tests/test_memory_faults.py -q

Each test proves a fault the store survives: a damaged index that keeps its size is detected by its checksum and rebuilt
from SQLite; a concurrent writer never forces a full rebuild; and every bad input to `python -m mmemory.memory`
ends with one line on stderr and exit code 2, without creating a store.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder  # noqa: E402

from mmemory.memory import MemoryStore  # noqa: E402
from mmemory.memory import __main__ as cli  # noqa: E402
from mmemory.memory.index import CHECKSUM, file_checksum, sidecar  # noqa: E402
from mmemory.memory.store import DB_NAME, INDEX_NAME  # noqa: E402

D = 64
PROG = "python -m mmemory.memory"


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _vector_store(path: Path, vecs: np.ndarray) -> list[int]:
    with MemoryStore(path, dim=D) as s:
        return s.add_many([{"text": f"memory {i}", "vector": v, "timestamp": 1e9, "saliency": 5}
                           for i, v in enumerate(vecs)], batch_size=1000)


def _one_error_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert lines[0].startswith(f"{PROG} ") and "error:" in lines[0] and "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# --- damaged index files -----------------------------------------------------------------------------------------

def test_zeroed_index_keeps_its_size_yet_is_rebuilt_and_every_memory_found(tmp_path, caplog, capsys):
    path, n = tmp_path / "mem", 3000
    vecs = _vectors(n)
    ids = _vector_store(path, vecs)
    index_file = path / INDEX_NAME
    meta = json.loads(sidecar(index_file).read_text())
    assert meta[CHECKSUM] == file_checksum(index_file)  # the sidecar records the saved file's checksum
    size = index_file.stat().st_size
    with open(index_file, "r+b") as f:  # zero a quarter of the file in the middle of the vectors; size unchanged
        f.seek(size // 4)
        f.write(b"\0" * (size // 4))
    assert index_file.stat().st_size == size
    # The damage is the kind the old check (dimension, type, count) cannot see, and it loses memories:
    raw = faiss.read_index(str(index_file))
    assert raw.ntotal == meta["ntotal"] == n and raw.d == D
    _, top = raw.search(vecs, 1)
    assert (top[:, 0] != np.array(ids) * 8).sum() > 100

    caplog.set_level(logging.WARNING, logger="mmemory.memory")
    assert cli.main(["stats", str(path)]) == 0           # the CLI's stats: no longer "in step"
    assert json.loads(capsys.readouterr().out)["index_in_step"] is False
    warned = [r.getMessage() for r in caplog.records if "checksum" in r.getMessage()]
    assert len(warned) == 1 and str(index_file) in warned[0] and "\n" not in warned[0]

    caplog.clear()
    damage = np.zeros(size // 4, np.uint8).tobytes()
    with open(index_file, "r+b") as f:  # damage the rebuilt file again, then open the store through the library
        f.seek(size // 4)
        f.write(damage)
    with MemoryStore(path, dim=D, exhaustive_below=0, n_candidates=5, update_access=False) as s:
        hits = [s.search(query_vector=v, k=1, weights={"relevance": 1}) for v in vecs]
        assert s.rebuilds == 1 and s.check_index()["in_step"]
    assert [h[0].memory.id for h in hits] == ids           # every memory is found again by its own vector
    assert [r.getMessage() for r in caplog.records if "checksum" in r.getMessage()]
    assert file_checksum(index_file) == json.loads(sidecar(index_file).read_text())[CHECKSUM]


def test_index_replaced_without_its_sidecar_or_without_a_checksum_is_rebuilt(tmp_path, caplog):
    path = tmp_path / "mem"
    vecs = _vectors(200)
    ids = _vector_store(path, vecs)
    index_file = path / INDEX_NAME
    # another valid index under the old sidecar (a kill between the two renames, or two processes saving at once)
    other = faiss.IndexIDMap2(faiss.IndexFlatIP(D))
    other.add_with_ids(_vectors(200, seed=1), np.array(ids, dtype=np.int64) * 8)
    faiss.write_index(other, str(index_file))
    caplog.set_level(logging.WARNING, logger="mmemory.memory")
    with MemoryStore(path, dim=D, exhaustive_below=0, update_access=False) as s:
        assert s.search(query_vector=vecs[7], k=1, weights={"relevance": 1})[0].memory.id == ids[7]
        assert s.rebuilds == 1
    # a sidecar from before checksums: not trusted, rebuilt once, then trusted
    meta = json.loads(sidecar(index_file).read_text())
    del meta[CHECKSUM]
    sidecar(index_file).write_text(json.dumps(meta))
    with MemoryStore(path, dim=D, exhaustive_below=0) as s:
        s.search(query_vector=vecs[0], k=1)
        assert s.rebuilds == 1
    assert any("no checksum" in r.getMessage() for r in caplog.records)
    with MemoryStore(path, dim=D, exhaustive_below=0) as s:
        s.search(query_vector=vecs[0], k=1)
        assert s.rebuilds == 0
    assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]  # no temp file is left behind


# --- a writer beside a reader --------------------------------------------------------------------------------------

def test_writer_committing_between_the_readers_reads_forces_no_rebuild(tmp_path):
    """Deterministic: a commit lands exactly between the reader's count and its read of the new rows."""
    path = tmp_path / "mem"
    vecs = _vectors(301)
    _vector_store(path, vecs[:300])
    reader = MemoryStore(path, dim=D, exhaustive_below=0, update_access=False)
    writer = MemoryStore(path, dim=D)
    reader.search(query_vector=vecs[0], k=1)
    writer.add("one more", vector=vecs[299], timestamp=1e9, saliency=5)   # the reader has a catch-up to do
    real = reader._all_vectors
    injected = []

    def commit_in_between(*a, **kw):
        if not injected:
            injected.append(writer.add("racing", vector=vecs[300], timestamp=1e9, saliency=5))
        return real(*a, **kw)

    reader._all_vectors = commit_in_between
    reader.search(query_vector=vecs[0], k=1)
    assert injected and reader.rebuilds == 0
    reader._all_vectors = real
    hit = reader.search(query_vector=vecs[300], k=1, weights={"relevance": 1})[0]   # caught up next time
    assert hit.memory.id == injected[0] and reader.rebuilds == 0 and reader.check_index()["in_step"]
    writer.close()
    reader.close()


def test_reader_searching_beside_a_writer_thread_never_rebuilds(tmp_path):
    path = tmp_path / "mem"
    vecs = _vectors(1100)
    _vector_store(path, vecs[:300])
    errors: list[BaseException] = []

    def write():
        try:
            with MemoryStore(path, dim=D, synchronous="OFF") as w:
                for i in range(300, 1100):  # one memory per transaction: as many commits as possible
                    w.add(f"memory {i}", vector=vecs[i], timestamp=1e9, saliency=5)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    reader = MemoryStore(path, dim=D, exhaustive_below=0, n_candidates=5, update_access=False)
    thread = threading.Thread(target=write)
    thread.start()
    searches, sizes = 0, []
    while thread.is_alive():
        assert reader.search(query_vector=vecs[searches % 300], k=1)
        sizes.append(reader._index.ntotal)
        searches += 1
    thread.join()
    assert not errors
    hit = reader.search(query_vector=vecs[1099], k=1, weights={"relevance": 1})[0]
    assert hit.memory.text == "memory 1099" and reader.check_index()["in_step"]
    assert len(set(sizes)) > 10, "the reader must have caught up with the writer many times"
    assert reader.rebuilds == 0, f"{reader.rebuilds} full rebuilds in {searches} searches beside a writer"
    reader.close()


# --- bad input to the CLI ------------------------------------------------------------------------------------------

TURN = {"session_id": "s", "turn_id": "t1", "timestamp": "2024-01-01T00:00:00Z", "speaker": "user", "text": "ok"}
QUERY = {"query_id": "q1", "session_id": "s", "timestamp": "2024-01-02T00:00:00Z", "question": "ok?",
         "evidence": ["t1"]}


@pytest.fixture
def fake_encoder(monkeypatch):
    monkeypatch.setattr(cli, "_encoder", lambda args: FakeEncoder())


@pytest.mark.parametrize("bad", ["turns", "queries"])
def test_evaluate_on_non_utf8_jsonl_is_one_line_and_exit_2(bad, tmp_path, capsys, fake_encoder):
    files = {"turns": tmp_path / "turns.jsonl", "queries": tmp_path / "queries.jsonl"}
    files["turns"].write_text(json.dumps(TURN) + "\n")
    files["queries"].write_text(json.dumps(QUERY) + "\n")
    with open(files[bad], "ab") as f:  # a Latin-1 byte on line 2
        f.write(json.dumps({**(TURN if bad == "turns" else QUERY), "text": "caf"}).encode()[:-2] + b"\xe9\"}\n")
    out = tmp_path / "m.json"
    rc = cli.main(["evaluate", "--turns", str(files["turns"]), "--queries", str(files["queries"]), "--out", str(out),
                   "--workdir", str(tmp_path / "w")])
    assert rc == 2 and not out.exists()
    _one_error_line(capsys.readouterr().err, f"{files[bad]}:2", "0xe9", "UTF-8")


@pytest.mark.parametrize("argv", [["stats"], ["search", "--text", "red circle"], ["forget", "--dry-run"]])
def test_read_commands_on_a_missing_store_exit_2_and_create_nothing(argv, tmp_path, capsys, fake_encoder):
    missing = tmp_path / "typo" / "mem"
    assert cli.main([argv[0], str(missing), *argv[1:]]) == 2
    _one_error_line(capsys.readouterr().err, str(missing), "does not exist")
    assert not (tmp_path / "typo").exists()
    empty = tmp_path / "empty"   # a directory that holds no store: refused too, and left empty
    empty.mkdir()
    assert cli.main([argv[0], str(empty), *argv[1:]]) == 2
    _one_error_line(capsys.readouterr().err, str(empty), DB_NAME)
    assert not any(empty.iterdir())


def test_missing_store_from_a_real_process(tmp_path):
    missing = tmp_path / "nope"
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "mmemory.memory", "search", str(missing), "--text", "hi"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    _one_error_line(r.stderr, str(missing))
    assert not missing.exists()


def test_wrong_encoder_dimension_exits_2(tmp_path, capsys, fake_encoder):
    path = tmp_path / "mem32"
    with MemoryStore(path, dim=32) as s:
        s.add("a 32-d memory", vector=np.ones(32), timestamp=1e9, saliency=5)
    for argv in (["search", str(path), "--text", "memory"], ["add", str(path), "--text", "another"]):
        assert cli.main(argv) == 2
        _one_error_line(capsys.readouterr().err, str(path), "32-d", "64-d", "encoder")
    with MemoryStore(path, readonly=True) as s:
        assert len(s) == 1


@pytest.mark.parametrize("cmd", ["add", "search", "evaluate"])
def test_encoder_none_is_refused_without_creating_a_store(cmd, tmp_path, capsys):
    path = tmp_path / "mem"
    if cmd == "search":
        _vector_store(path, _vectors(3))
    argv = {"add": ["add", str(path), "--text", "hello"], "search": ["search", str(path), "--text", "hello"],
            "evaluate": ["evaluate", "--turns", str(tmp_path / "t.jsonl"), "--queries", str(tmp_path / "q.jsonl"),
                         "--out", str(tmp_path / "m.json")]}[cmd]
    (tmp_path / "t.jsonl").write_text(json.dumps(TURN) + "\n")
    (tmp_path / "q.jsonl").write_text(json.dumps(QUERY) + "\n")
    assert cli.main([*argv, "--encoder", "none"]) == 2
    _one_error_line(capsys.readouterr().err, "--encoder none", "minilm")
    assert cmd == "search" or not path.exists()


def test_other_bad_input_is_one_line(tmp_path, capsys, fake_encoder):
    path = tmp_path / "mem"
    assert cli.main(["add", str(path), "--text", "red circle", "--timestamp", "yesterday"]) == 2
    _one_error_line(capsys.readouterr().err, "yesterday", "ISO 8601")
    assert cli.main(["add", str(path), "--text", "a dog", "--image", str(tmp_path / "dog.png")]) == 2
    _one_error_line(capsys.readouterr().err, "dog.png", "does not exist")
    (tmp_path / "t.jsonl").write_text(json.dumps(TURN) + "\n{not json}\n" + json.dumps(TURN) + "\n")
    (tmp_path / "q.jsonl").write_text(json.dumps(QUERY) + "\n")
    assert cli.main(["evaluate", "--turns", str(tmp_path / "t.jsonl"), "--queries", str(tmp_path / "q.jsonl"),
                     "--out", str(tmp_path / "m.json")]) == 2
    _one_error_line(capsys.readouterr().err, "t.jsonl:2")
    not_a_db = tmp_path / "junk"
    not_a_db.mkdir()
    (not_a_db / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    assert cli.main(["stats", str(not_a_db)]) == 2
    _one_error_line(capsys.readouterr().err, str(not_a_db / DB_NAME))
