"""Small I/O helpers shared by every stage: atomic writes, JSON(L), logging set-up, and readers of user files whose
errors name the file, the line and the fix (`read_text_file`, `read_json_file`, `excerpt`)."""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same directory, then rename: a kill never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


EXCERPT_CHARS = 200  # the most characters of a user's input an error message quotes
BAD_INPUT_EXIT = 2  # the exit code of a run stopped by bad input (as argparse's)


class InputError(ValueError):
    """Bad input that the user fixes (a data file, a setting, a model path): its message names the file, the item and
    the fix. A Snakemake job (`setup_logging`) reports an uncaught one as one line in its log and exit code 2, not
    as a traceback. The stages' own errors (CountingDataError, CorefError, ConfigError, ...) derive from it."""


def _report_bad_input(kind, value, tb, previous=sys.excepthook) -> None:
    """sys.excepthook of a job: an InputError is one log line and exit code 2; anything else, the usual traceback."""
    if not isinstance(value, InputError):
        previous(kind, value, tb)
        return
    logging.getLogger("mmemory").error("%s", " ".join(str(value).split()))
    for h in logging.getLogger().handlers:
        h.flush()
    for stream in (sys.stderr, sys.stdout):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(BAD_INPUT_EXIT)  # the interpreter would exit with 1 after a hook; the data step has nothing to clean up


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """`repr(value)` cut to `limit` characters, saying how much was left out: a 5 MB bad line is never echoed whole."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    cut = text[:limit]
    return f"{cut!r}... ({len(text) - limit} more characters)" if isinstance(value, str) else \
        f"{cut}... ({len(text) - limit} more characters)"


def _decode_error(path: Path, raw: bytes, e: UnicodeDecodeError, error: type[Exception]) -> Exception:
    line = raw.count(b"\n", 0, e.start) + 1
    column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
    return error(f"{path}:{line}: byte 0x{raw[e.start]:02x} at column {column} is not UTF-8. Fix: re-save the file as "
                 "UTF-8 (e.g. `iconv -f cp949 -t utf-8` for Korean text saved by an old Windows editor, or "
                 "`-f latin1`)")


def read_text_file(path: str | Path, error: type[Exception] = ValueError) -> str:
    """The text of a UTF-8 file (a byte-order mark dropped). Not UTF-8: `error` naming the file, the line, the byte
    and the fix, never a bare UnicodeDecodeError."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _decode_error(path, raw, e, error) from None


def read_json_file(path: str | Path, error: type[Exception] = ValueError, fix: str = "write valid JSON") -> Any:
    """Parse a UTF-8 JSON file; bad bytes, bad JSON and nesting too deep for the parser all raise `error` naming the
    file, where, and `fix`."""
    path = Path(path)
    text = read_text_file(path, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path}:{e.lineno}: not valid JSON (column {e.colno}: {e.msg}). Fix: {fix}") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to read (thousands of levels of [ or {{). Fix: {fix}") from None


def read_jsonl(path: str | Path, torn_tail: bool = True) -> list[dict]:
    """Read JSON lines; a bad line names the file and line number. torn_tail: a malformed LAST line is taken for a
    write cut short by a kill and skipped with a warning (for our own resumable outputs); False: it is an error like
    any other line (for a user's input, where a bad last line is more likely an error than a kill)."""
    rows = []
    path = Path(path)
    raw = path.read_bytes().splitlines()
    lines = []
    for n, b in enumerate(raw, 1):
        try:
            lines.append(b.decode("utf-8"))
        except UnicodeDecodeError as e:
            if torn_tail and n == len(raw):  # a kill mid-write can cut a multi-byte character: a torn last line
                logging.getLogger(__name__).warning("%s:%d: ignoring a torn last line (cut mid-character)", path, n)
                break
            raise ValueError(f"{path}:{n}: byte 0x{b[e.start]:02x} at column {e.start + 1} is not UTF-8; re-save the "
                             "file as UTF-8") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError) as e:
            why = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            if n == len(lines) and torn_tail:
                logging.getLogger(__name__).warning("%s:%d: ignoring a torn last line", path, n)
                continue
            last = (" (the last line: if a kill cut the file mid-write, delete that line, or let the reader skip it: "
                    "torn_tail=True, on the command line --tolerate-torn-tail)") if n == len(lines) else ""
            raise ValueError(f"{path}:{n}: not valid JSON ({why}){last}; fix or delete the line, which starts "
                             f"{excerpt(line, 80)}") from None
    return rows


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append rows and fsync, so that finished work survives a kill."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


class _Tee:
    """A text stream that writes to several streams (the job's log and its attempt copy)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.streams[0].fileno()


def attempt_log_path(log_path: str | Path) -> Path:
    """Where this attempt's copy of a job's log goes: `<log dir>/attempts/<log name>.<UTC time>-<pid>.log`.
    Snakemake deletes a job's log before it runs the job again, so a killed or failed attempt's log survives only
    in this copy."""
    log_path = Path(log_path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = log_path.parent / "attempts" / f"{log_path.stem}.{stamp}-{os.getpid()}"
    path, n = Path(f"{base}{log_path.suffix or '.log'}"), 1
    while path.exists():  # two attempts in one second of one process (tests): never overwrite one
        path, n = Path(f"{base}-{n}{log_path.suffix or '.log'}"), n + 1
    return path


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> None:
    """Send logging (and stderr) to a Snakemake log file, or to stderr when run by hand. With a log file, each
    attempt's log is also kept under `<log dir>/attempts/` (`attempt_log_path`): a rerun after a kill starts a new
    log, and the killed attempt's log is still there. An uncaught `InputError` then ends the process with one log
    line and exit code 2."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "w", buffering=1, encoding="utf-8")
        copy_path = attempt_log_path(log_path)
        copy_path.parent.mkdir(parents=True, exist_ok=True)
        copy = open(copy_path, "w", buffering=1, encoding="utf-8")
        tee = _Tee(stream, copy)
        sys.stderr = tee
        handlers = [logging.StreamHandler(tee)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers,
                        force=True)
    sys.excepthook = _report_bad_input  # bad input: one line and exit code 2, never a traceback
