"""mmemory.io: JSON lines that survive a kill, and bad bytes that name the file, the line and the fix.
Run: pytest tests/test_io.py"""
import json

import pytest

from mmemory.io import append_jsonl, read_jsonl


def test_non_utf8_byte_names_file_line_and_fix(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "caf\xe9"}\n{"c": 3}\n')
    with pytest.raises(ValueError, match=r"rows.jsonl:2: byte 0xe9 at column 11 is not UTF-8; re-save"):
        read_jsonl(path)


def test_torn_last_line_is_skipped_even_mid_character(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [{"a": 1}, {"b": 2}])
    with open(path, "ab") as f:
        f.write(json.dumps({"c": "é"}, ensure_ascii=False).encode()[:-3])  # cut inside the two-byte 'é'
    assert read_jsonl(path) == [{"a": 1}, {"b": 2}]
    path.write_bytes(path.read_bytes() + b'\n{"d": 4}\n')  # the torn line is no longer the last one: an error
    with pytest.raises(ValueError, match=r":3: "):
        read_jsonl(path)


def test_each_attempt_keeps_its_own_log(tmp_path):
    """Snakemake deletes a job's log before a rerun: the killed attempt's copy under attempts/ survives it."""
    import logging
    import sys

    from mmemory.io import setup_logging

    log = tmp_path / "logs" / "job.log"
    saved, hook = sys.stderr, sys.excepthook
    try:
        setup_logging(log)
        logging.getLogger("attempt").info("first attempt, then killed")
        log.unlink()  # what Snakemake does before it runs the job again
        setup_logging(log)
        logging.getLogger("attempt").info("second attempt")
    finally:
        sys.stderr, sys.excepthook = saved, hook
        logging.basicConfig(force=True, handlers=[logging.StreamHandler(saved)])
    copies = sorted((tmp_path / "logs" / "attempts").glob("job.*.log"))
    texts = [c.read_text() for c in copies]
    assert len(copies) == 2 and any("killed" in t for t in texts) and any("second" in t for t in texts)
    assert "second attempt" in log.read_text() and "killed" not in log.read_text()
