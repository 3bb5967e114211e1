"""One resume rule for every resumable step (teacher generation, prediction, EMR training and evaluation, VLM
fine-tuning, shard extraction); README "Using the workflow".

A step's `Fingerprint` has three parts, each a dict of named digests:

- `inputs`: the CONTENT of what the step reads (`file_digest(path)`, or `obj_digest(items)` of the items it uses);
- `settings`: the JSON-able settings (stored as a digest per name);
- `models`: the content of model files (`model_digest(path)`: every file of a checkpoint directory).

A step keeps a stamp (`Run`, a small JSON file next to its partial work) holding the fingerprint and whether the
run finished. `Run.begin(clear)` decides, and logs in one line why:

- no stamp, a stamp of another fingerprint ("inputs changed (train.json)", "settings changed (teacher)",
  "model files changed (vlm)"), or a stamp of a FINISHED run: `clear()` removes the partial work and the step
  starts from scratch. A step that runs again after it finished was started because its output is missing or
  forced (`--forcerun`), so it reruns;
- a stamp of the same fingerprint, not finished: an interrupted run; the step resumes from its partial work.

`Run.finish()` marks the run finished once the step's final outputs are written.

    fp = Fingerprint(inputs=file_digests(train_json), settings={"lr": 1e-4}, models={"llm": model_digest(llm)})
    run = Run(ckpt_dir / "run.json", fp, "train_emr after")
    if not run.begin(clear=lambda: shutil.rmtree(ckpt_dir, ignore_errors=True)):
        ...  # from scratch
    ...
    run.finish()
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from mmemory.io import atomic_write_json

logger = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes read per update while hashing a file
_FILE_CACHE: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> digest, within one process


def _blake(data: bytes = b"") -> "hashlib.blake2b":
    return hashlib.blake2b(data, digest_size=16)


def file_digest(path: str | Path) -> str:
    """blake2b digest of a file's bytes, read in 1 MiB chunks. Cached per (path, size, mtime, inode) within the
    process, so a multi-GB checkpoint is read once per process however many steps ask."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _FILE_CACHE.get(key)
    if hit is None:
        h = _blake()
        with open(p, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        hit = _FILE_CACHE[key] = h.hexdigest()
    return hit


def file_digests(*paths: str | Path | None) -> dict[str, str]:
    """{file name: content digest} for the given files (None skipped); the name is what a log line reports (the
    whole path where two files share a name)."""
    names = [Path(p).name for p in paths if p]
    return {(Path(p).name if names.count(Path(p).name) == 1 else str(p)): file_digest(p) for p in paths if p}


def files_digest(paths: Iterable[str | Path | None]) -> str:
    """One digest of many files' contents (e.g. the images a step uses), in order, each file once; a missing file
    counts as missing rather than failing (the step itself reports it)."""
    h = _blake()
    for p in dict.fromkeys(str(p) for p in paths if p):
        h.update(f"{file_digest(p) if Path(p).is_file() else 'missing'}\n".encode())
    return h.hexdigest()


def model_digest(path: str | Path | None) -> str:
    """Content digest of a model: a file, or every file under a directory (relative names and bytes). A name that
    is not a local path (a hub id such as "unsloth/gemma-3-4b-it", an Ollama tag) is identified by its name only."""
    if not path:
        return ""
    p = Path(path)
    if not p.exists():
        return f"name:{path}"
    if p.is_file():
        return file_digest(p)
    h = _blake()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(f"{f.relative_to(p).as_posix()}\0{file_digest(f)}\n".encode())
    return h.hexdigest()


def obj_digest(obj: Any) -> str:
    """Digest of a JSON-able object (sorted keys; anything else by its str())."""
    return _blake(json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")).hexdigest()


def items_digest(items: Iterable[Any]) -> str:
    """Digest of a sequence of JSON-able items, streamed (for many items: keys and their texts)."""
    h = _blake()
    for it in items:
        h.update(json.dumps(it, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


PARTS = ("inputs", "settings", "models")
_WHAT = {"inputs": "inputs changed", "settings": "settings changed", "models": "model files changed"}


@dataclass
class Fingerprint:
    """What a step's partial work was made from. `inputs` and `models` map a name to a content digest; `settings`
    maps a name to its JSON-able value (only its digest is stored)."""

    inputs: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    @classmethod
    def coerce(cls, fp: "Fingerprint | str") -> "Fingerprint":
        """A plain string (a caller's own key) counts as one setting."""
        return fp if isinstance(fp, Fingerprint) else cls(settings={"key": fp})

    def components(self) -> dict[str, dict[str, str]]:
        return {"inputs": dict(self.inputs), "settings": {k: obj_digest(v) for k, v in self.settings.items()},
                "models": dict(self.models)}

    @property
    def digest(self) -> str:
        return obj_digest(self.components())

    def changes(self, old: dict | None) -> str | None:
        """One line naming what differs from `old` (a stored `components()`), or None when nothing does."""
        if not isinstance(old, dict) or not all(isinstance(old.get(p), dict) for p in PARTS):
            return "the earlier run left no fingerprint"
        new, out = self.components(), []
        for part in PARTS:
            names = sorted(k for k in set(new[part]) | set(old[part]) if new[part].get(k) != old[part].get(k))
            if names:
                out.append(f"{_WHAT[part]} ({', '.join(names)})")
        return "; ".join(out) or None


class Run:
    """The stamp of one resumable step: `{"digest", "components", "complete"}` in a small JSON file."""

    def __init__(self, stamp: str | Path, fp: Fingerprint | str, step: str):
        self.stamp = Path(stamp)
        self.fp = Fingerprint.coerce(fp)
        self.step = step
        self.resumed = False
        self.reason = ""

    def read(self) -> dict | None:
        try:
            return json.loads(self.stamp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def decide(self) -> tuple[bool, str]:
        """(resume?, why) without touching anything."""
        old = self.read()
        if old is None:
            return False, "no earlier run"
        changed = self.fp.changes(old.get("components"))
        if changed:
            return False, changed
        if old.get("complete"):
            return False, "the previous run finished (a rerun: its output is missing or it was forced)"
        return True, "an interrupted run of the same inputs, settings and model files"

    def begin(self, clear: Callable[[], None] | None = None) -> bool:
        """Resume (True) or start from scratch (False, after `clear()` removed the partial work); logs why."""
        self.resumed, self.reason = self.decide()
        if self.resumed:
            logger.info("%s: resuming: %s", self.step, self.reason)
            return True
        log = logger.info if self.reason == "no earlier run" else logger.warning
        log("%s: starting from scratch: %s", self.step, self.reason)
        if clear is not None:
            clear()
        self._write(False)
        return False

    def finish(self) -> None:
        """Mark the run finished: a later run of this step starts from scratch."""
        self._write(True)

    def _write(self, complete: bool) -> None:
        atomic_write_json(self.stamp, {"step": self.step, "digest": self.fp.digest,
                                       "components": self.fp.components(), "complete": complete}, indent=1)


def remove(*paths: str | Path) -> None:
    """Delete files or directory trees that exist (a `clear` helper)."""
    import shutil

    for p in paths:
        p = Path(p)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            os.unlink(p)
