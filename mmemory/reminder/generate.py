"""`generate_reminder_data`: ask a teacher for a `<reminder>` response for every training sample.

Output rows (JSONL): {image_id, round, conversation, response}. Invalid responses are retried; after
`max_attempts` the sample goes to the rejects file as {image_id, round, conversation, reason, response}.
Transient server faults (timeouts, connection errors, 5xx, malformed bodies) are retried with exponential
backoff and count against the same limit.

Resume: finished rows (accepted or rejected) are appended to progress files with fsync as they arrive; a rerun
after a kill skips their keys. The progress files carry the step's fingerprint (`mmemory.fingerprint`: the content of
the training data and prompts, the teacher settings, the teacher's model files) and whether the run finished: when
the fingerprint changed, or the run had finished (a forced rerun), the old progress is moved aside and the work
starts over.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from mmemory.fingerprint import Fingerprint, Run
from mmemory.io import append_jsonl, atomic_write_text, read_jsonl
from mmemory.reminder.prompts import Sample
from mmemory.reminder.response import validate_response
from mmemory.reminder.teachers import TeacherConfig, TeacherError, TransientTeacherError

logger = logging.getLogger(__name__)


class Progress:
    """Append-only JSONL progress keyed by sample key, with a `Run` stamp (`<name>.meta.json`): progress of another
    fingerprint, or of a finished run, is moved aside (`<name>.stale-<digest>.jsonl`) and the work starts over."""

    def __init__(self, path: str | Path, fp: Fingerprint | str, step: str | None = None):
        self.path = Path(path)
        self.meta = self.path.with_suffix(".meta.json")
        self.lock = threading.Lock()
        self.run = Run(self.meta, fp, step or str(self.path))

        def clear():
            if self.path.exists():
                old = self.run.read() or {}
                tag = str(old.get("digest") or old.get("fingerprint") or "unknown")[:16]
                stale = self.path.with_suffix(f".stale-{tag}.jsonl")
                logger.warning("%s: moving the old progress to %s", self.path, stale)
                self.path.replace(stale)

        self.run.begin(clear)
        self.rows = read_jsonl(self.path) if self.path.exists() else []
        if self.rows and self.path.read_bytes()[-1:] != b"\n":  # drop a torn last line before appending
            with open(self.path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows)

    def finish(self) -> None:
        """The outputs built from this progress are written: a later run starts over."""
        self.run.finish()

    def keys(self) -> set[str]:
        return {r["key"] for r in self.rows}

    def append(self, row: dict) -> None:
        with self.lock:
            append_jsonl(self.path, [row])
            self.rows.append(row)


def ask_teacher(teacher, sample: Sample, max_attempts: int = 3, backoff_s: float = 1.0,
                sleep: Callable[[float], None] = time.sleep) -> tuple[str | None, str | None, str | None]:
    """(response, None, None) when valid, else (None, reason, last response). Retries invalid responses and
    transient faults up to `max_attempts` in all; waits backoff_s * 2**k between tries after a fault."""
    reason, last = "no attempt made", None
    for attempt in range(max_attempts):
        try:
            last = teacher.respond(sample)
        except TransientTeacherError as e:
            reason = f"attempt {attempt + 1}/{max_attempts}: {e}"
            logger.warning("%s: %s", sample.key, reason)
            if attempt + 1 < max_attempts:
                sleep(backoff_s * 2 ** attempt)
            continue
        problem = validate_response(last)
        if problem is None:
            return last, None, None
        reason = f"invalid response after {attempt + 1} attempt(s): {problem}"
    return None, reason, last


def generate_reminder_data(samples: Iterable[Sample], teacher, out_jsonl: str | Path, rejects_jsonl: str | Path,
                           progress_dir: str | Path, fp: Fingerprint | str,
                           max_attempts: int = TeacherConfig.max_attempts, backoff_s: float = TeacherConfig.backoff_s,
                           concurrency: int = TeacherConfig.concurrency,
                           sleep: Callable[[float], None] = time.sleep) -> dict:
    """Run the teacher over `samples` (resumable), then write the accepted rows and the rejects atomically."""
    samples = list(samples)
    progress_dir = Path(progress_dir)
    done = Progress(progress_dir / "responses.jsonl", fp, "generate_reminder_data")
    finished = done.keys()
    todo = [s for s in samples if s.key not in finished]
    logger.info("teacher %s: %d samples, %d already done, %d to go (concurrency %d)",
                getattr(teacher, "name", type(teacher).__name__), len(samples), len(samples) - len(todo),
                len(todo), concurrency)
    t0 = time.time()

    def work(s: Sample) -> dict:
        response, reason, last = ask_teacher(teacher, s, max_attempts, backoff_s, sleep)
        row = {"key": s.key, "image_id": s.image_id, "round": s.round, "conversation": s.conversation}
        row.update({"response": response} if reason is None else {"reason": reason, "response": last})
        return row

    with tqdm(total=len(todo), desc="reminder teacher", unit="sample") as bar:
        if concurrency <= 1:
            for s in todo:
                done.append(work(s))
                bar.update()
        else:
            with ThreadPoolExecutor(concurrency) as pool:
                futures = [pool.submit(work, s) for s in todo]
                try:
                    for f in as_completed(futures):
                        done.append(f.result())
                        bar.update()
                except TeacherError:
                    for f in futures:
                        f.cancel()
                    raise
    elapsed = time.time() - t0
    if todo:
        logger.info("teacher throughput: %.1f samples/s (%d in %.1f s)", len(todo) / max(elapsed, 1e-9),
                    len(todo), elapsed)
    order = {s.key: i for i, s in enumerate(samples)}
    rows = sorted((r for r in done.rows if r["key"] in order), key=lambda r: order[r["key"]])
    accepted = [{k: r[k] for k in ("image_id", "round", "conversation", "response")} for r in rows
                if "reason" not in r]
    rejected = [{k: r.get(k) for k in ("image_id", "round", "conversation", "reason", "response")} for r in rows
                if "reason" in r]
    for path, part in ((out_jsonl, accepted), (rejects_jsonl, rejected)):
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part))
    done.finish()
    logger.info("accepted %d, rejected %d", len(accepted), len(rejected))
    return {"samples": len(samples), "accepted": len(accepted), "rejected": len(rejected),
            "resumed": len(samples) - len(todo)}
