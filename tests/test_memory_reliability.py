"""MemoryStore under crashes and concurrency: a kill mid-add loses nothing committed; a reader works beside a writer.

    pytest tests/test_memory_reliability.py -q
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder  # noqa: E402

from mmemory.memory import MemoryStore  # noqa: E402

WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from _memory_fixtures import FakeEncoder
    from mmemory.memory import MemoryStore

    store = MemoryStore({path!r}, encoder=FakeEncoder(), save_every=120)
    batch = 0
    while batch < {batches}:
        ids = store.add_many([{{"text": f"batch {{batch}} item {{i}} about topic{{i % 7}}", "session": "s",
                               "timestamp": 1e9 + batch}} for i in range(50)])
        print("committed", batch, ids[0], ids[-1], flush=True)
        batch += 1
    print("done", flush=True)
""")


def _writer(path: Path, batches: int = 10_000) -> subprocess.Popen:
    code = WRITER.format(tests=str(Path(__file__).parent), path=str(path), batches=batches)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)


def test_kill_mid_add_keeps_every_committed_memory(tmp_path):
    path = tmp_path / "mem"
    proc = _writer(path)
    committed = []
    for line in proc.stdout:
        if line.startswith("committed"):
            committed.append(int(line.split()[3]))  # last id of a committed batch
        if len(committed) >= 6:
            break
    time.sleep(0.05)  # let it get into the middle of the next batch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with sqlite3.connect(path / "memory.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with MemoryStore(path, encoder=FakeEncoder(), exhaustive_below=0) as s:
        n = len(s)
        assert n >= len(committed) * 50   # everything reported as committed is there ...
        assert n % 50 == 0                # ... and a batch is all or nothing (no half-written add)
        for last in committed:
            assert s.get(last).text.endswith("about topic0")  # item 49 % 7 == 0
        # the index (saved every 120 vectors, so behind) is caught up or rebuilt: every memory is findable
        hits = s.search(query_text=f"batch {n // 50 - 1} item 3", k=1, weights={"relevance": 1})
        assert hits and s.check_index()["in_step"] and s._index.ntotal == n


def test_reader_works_while_writer_writes(tmp_path):
    path = tmp_path / "mem"
    with MemoryStore(path, encoder=FakeEncoder()) as s:
        s.add("seed memory about topic0", session="s", timestamp=1e9)
    proc = _writer(path, batches=12)
    reader = MemoryStore(path, encoder=FakeEncoder(), update_access=True, exhaustive_below=0)
    seen, searches = [], 0
    try:
        while proc.poll() is None or searches < 5:
            hits = reader.search(query_text="topic0", k=5)
            assert hits, "a reader must always get results"
            seen.append(len(reader))
            searches += 1
            if proc.poll() is not None and searches >= 5:
                break
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0 and proc.stdout.read().strip().endswith("done")
    assert seen == sorted(seen) and seen[-1] == 1 + 12 * 50 and len(set(seen)) > 1  # saw the store grow
    reader.search(query_text="batch 11 item 1", k=1)
    assert reader.check_index()["in_step"]
    assert reader.rebuilds == 0  # the writer's commits were caught up, never mistaken for a damaged index
    reader.close()


def test_read_only_store_never_writes(tmp_path):
    path = tmp_path / "mem"
    with MemoryStore(path, encoder=FakeEncoder()) as s:
        a = s.add("a fact", timestamp=1e9)
    ro = MemoryStore(path, encoder=FakeEncoder(), readonly=True)
    assert ro.search(query_text="fact", k=1)[0].memory.id == a
    assert ro.get(a).access_count == 0
    with pytest.raises(PermissionError, match="read-only"):
        ro.add("another")
