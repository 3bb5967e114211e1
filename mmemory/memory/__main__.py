"""`python -m mmemory.memory {add,search,stats,forget,evaluate}`: the memory store from the command line.

    python -m mmemory.memory add    STORE --text "the red circle is at the top left" --session s1 [--image x.png --caption ...]
    python -m mmemory.memory add    STORE --jsonl turns.jsonl   # idempotent: a rerun after a kill adds what is missing
    python -m mmemory.memory search STORE --text "where was the red circle?" -k 5 [--weights relevance=1,recency=0.5]
    python -m mmemory.memory stats  STORE
    python -m mmemory.memory forget STORE [--threshold 0.05 --strength-hours 24 --dry-run]
    python -m mmemory.memory evaluate --turns T.jsonl --queries Q.jsonl --out M.json [--methods "rel:relevance=1;..."] [--tune loo] [--name NAME]

The encoder is chosen with --encoder {minilm,clip,imagebind} and --encoder-path (default: the packaged MiniLM).
A store remembers its dimension: open it with the encoder it was built with. Only `add` creates a store: the other
commands refuse a path that holds none. Bad input (a missing store, a wrong encoder dimension, undecodable or
malformed JSONL, a missing image, a forget threshold outside (0, 1) or a strength of 0 hours) ends with one line on
stderr naming the file, the item and the fix, and exit code 2; a bad option value (`--weights x`, `-k 0`) gets
argparse's usage and exit code 2. A malformed LAST line of a JSONL input is an error like any other unless
`--tolerate-torn-tail` says the file may have been cut short by a kill (then it is skipped, with a warning).

`add --jsonl` reads the turns JSONL of the memory-sessions contract and is idempotent by a source key per turn
(its (session_id, turn_id), or a hash of its content when it has no turn_id): re-importing the file after a kill
adds only the turns that are missing (`mmemory.memory.store.import_turns`).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from mmemory.io import atomic_write_json, excerpt
from mmemory.memory.index import INDEX_TYPES
from mmemory.memory.scoring import MemoryConfig

logger = logging.getLogger("mmemory.memory")
PROG = "python -m mmemory.memory"
ENCODERS = ("minilm", "clip", "imagebind")
# Errors that mean bad input: reported as one line with exit code 2. MemoryInputError, UnicodeDecodeError and the
# encoders' ImageError are ValueErrors; FileNotFoundError etc. name a path (a missing image, encoder checkpoint or
# JSONL file); NotImplementedError is an image query to a text-only encoder.
BAD_INPUT = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, NotImplementedError)


class CliError(Exception):
    """A refused command line: the message is the whole report."""


def parse_weights(text: str) -> dict[str, float]:
    """"relevance=1,recency=0.5" -> {"relevance": 1.0, "recency": 0.5}. A bad part is argparse's error (exit 2)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{excerpt(part, 80)} is not name=number (e.g. "
                                             "relevance=1,recency=0.5)") from None
    return out


def parse_methods(text: str) -> dict[str, dict[str, float]]:
    """"rel:relevance=1;full:relevance=1,recency=1" -> {"rel": {...}, "full": {...}}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, weights = part.partition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"{excerpt(part, 80)} is not name:weights (e.g. "
                                             "full:relevance=1,recency=1)")
        out[name.strip()] = parse_weights(weights)
    return out


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{excerpt(text, 40)} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{excerpt(text, 40)} is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return value


def check_utf8(path: str | Path, flag: str, torn_tail: bool = False) -> None:
    """Refuse a missing or non-UTF-8 JSONL file with the file, the line and the fix (json would only say 'byte 96').
    torn_tail: a last line cut mid-character is left to the reader, which skips it."""
    path = Path(path)
    if not path.is_file():
        raise CliError(f"{flag} {path} does not exist; check the path")
    with open(path, "rb") as f:
        lines = f.read().splitlines()
        for n, line in enumerate(lines, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                if torn_tail and n == len(lines):
                    continue
                raise CliError(f"{path}:{n}: byte 0x{line[e.start]:02x} at column {e.start + 1} is not UTF-8; re-save "
                               "the file as UTF-8 (e.g. iconv -f latin1 -t utf-8) or fix that line") from None


def _need_encoder(args) -> None:
    if args.encoder not in ENCODERS:
        extra = (" (`none` means vectors are passed in from Python, which the command line cannot do)"
                 if args.encoder == "none" else "")
        raise CliError(f"--encoder {args.encoder} cannot encode text{extra}; choose "
                       f"{', '.join(ENCODERS)}: the encoder the store was built with")


def _encoder(args):
    from mmemory.encoders import load_encoder

    return load_encoder(args.encoder, args.encoder_path)


def _observer(args):
    """The observation extractor `--observations CONFIG` asks for, or None (off: the default)."""
    if not args.observations:
        return None
    from mmemory.memory.observations import OllamaObservationExtractor, config_from_file

    cfg = config_from_file(args.observations)
    if not cfg.enabled:
        logger.info("%s: memory.observations.enabled is false; no observations", args.observations)
        return None
    return OllamaObservationExtractor(cfg)


def _store(args, create: bool = False, encoder: bool = True):
    """The store at args.store. Only `add` creates one; the existence check runs before the encoder loads."""
    from mmemory.memory.store import MemoryStore, require_store

    if not create:
        require_store(args.store)
    if encoder:
        _need_encoder(args)
    return MemoryStore(args.store, encoder=_encoder(args) if encoder else None, index=args.index,
                       half_life=args.half_life, recency_unit=args.recency_unit or MemoryConfig.recency_unit,
                       create=create)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmemory.memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--encoder", default="minilm",
                        help="minilm | clip | imagebind: the encoder the store was built with (stats/forget: unused)")
    common.add_argument("--encoder-path", default=None, help="model directory / checkpoint (minilm: packaged)")
    common.add_argument("--index", default=None, choices=list(INDEX_TYPES),
                        help="FAISS index type (default: config memory.index's: pca_hnsw, which is exact flat below pca_train vectors)")
    common.add_argument("--half-life", type=positive_float, default=None,
                        help="recency half-life in --recency-unit (default: 24 hours, 50 turns, 0.5 span)")
    common.add_argument("--recency-unit", default=None, choices=["hours", "turns", "span"],
                        help="hours | turns | span (fraction of the session so far); default: config memory's, "
                             f"{MemoryConfig.recency_unit}, and span for evaluate (scale-free on conversations of "
                             "any length)")
    for name in ("add", "search", "stats", "forget"):
        p = sub.add_parser(name, parents=[common])
        p.add_argument("store", help="store directory (only add creates it; the others need an existing store)")
        if name == "add":
            p.add_argument("--jsonl", default=None, help="add every turn of a memory-sessions turns JSONL, "
                           "idempotently (a rerun after a kill adds only what is missing); not with --text")
            p.add_argument("--tolerate-torn-tail", action="store_true",
                           help="--jsonl: skip a malformed last line (a write cut short by a kill)")
            p.add_argument("--text", default="")
            p.add_argument("--session", default="default")
            p.add_argument("--turn", type=int, default=None)
            p.add_argument("--timestamp", default=None, help="ISO 8601 (default: now)")
            p.add_argument("--speaker", default="user")
            p.add_argument("--image", default=None)
            p.add_argument("--caption", default=None)
            p.add_argument("--saliency", type=float, default=None, help="1..10 (default: heuristic)")
        if name == "search":
            p.add_argument("--text", default=None, help="query text")
            p.add_argument("--image", default=None, help="query image")
            p.add_argument("-k", type=positive_int, default=5)
            p.add_argument("--weights", type=parse_weights, default=None, help="e.g. relevance=1,recency=0.5")
            p.add_argument("--session", default=None)
            p.add_argument("--now", default=None, help="ISO 8601 time recency is measured from (default: now)")
            p.add_argument("--no-access-update", action="store_true", help="do not count this retrieval")
        if name == "forget":
            p.add_argument("--now", default=None)
            p.add_argument("--threshold", type=float, default=0.05, help="retention below which a memory is "
                           "forgotten, in (0, 1)")
            p.add_argument("--strength-hours", type=float, default=24.0, help="memory strength in hours, above 0")
            p.add_argument("--dry-run", action="store_true")
    p = sub.add_parser("evaluate", parents=[common], help="score retrieval methods on turns/queries JSONL")
    p.add_argument("--turns", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--methods", type=parse_methods, default=None,
                   help='"name:comp=w,...;name2:..." (default: config memory.methods: '
                        f'{", ".join(MemoryConfig().methods)})')
    p.add_argument("--retrieve-k", type=positive_int, default=MemoryConfig.retrieve_k,
                   help="top memories counted as accessed after a query (default: config memory.retrieve_k)")
    p.add_argument("--tolerate-torn-tail", action="store_true",
                   help="skip a malformed last line of --turns / --queries (a write cut short by a kill) instead of "
                        "refusing it")
    p.add_argument("--workdir", default="/tmp/mmemory-memory-eval", help="scratch stores (deleted afterwards)")
    p.add_argument("--tune", default=None, choices=["loo"],
                   help="loo: add `tuned (nested loo)`: each session scored by weights chosen on the other sessions' "
                        "queries only, the tuning procedure (neutral start, grid) included")
    p.add_argument("--observations", default=None, metavar="CONFIG_YAML",
                   help="extract observations with a local Ollama model as memory.observations in this config says "
                        "(off unless its enabled: true; see docs/memory.md); default: none")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads for the encoder (default: torch's, one per core); on a machine busy with other "
                        "jobs, 1 avoids threads waiting on each other")
    p.add_argument("--embedding-cache", default=None,
                   help="an .npz file of text embeddings kept across runs with the same encoder (default: none; "
                        "every run encodes its texts)")
    p.add_argument("--name", default=None, help="the data's name in the table titles (default: the turns file's "
                                                "folder name)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except (CliError, *BAD_INPUT) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, UnicodeDecodeError):  # raised past check_utf8 (e.g. a file that changed): still one line
            msg = f"undecodable input ({msg}); re-save the input files as UTF-8"
        print(f"{PROG} {args.cmd}: error: {msg}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.cmd == "evaluate":
        from mmemory.memory.evaluate import evaluate, load_sessions, metrics_json

        check_utf8(args.turns, "--turns", args.tolerate_torn_tail)
        check_utf8(args.queries, "--queries", args.tolerate_torn_tail)
        _need_encoder(args)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        turns, queries = load_sessions(args.turns, args.queries, torn_tail=args.tolerate_torn_tail)
        methods = args.methods or MemoryConfig().methods
        unit = args.recency_unit or "span"
        t0 = time.perf_counter()
        res = evaluate(turns, queries, _encoder(args), methods, args.workdir, args.retrieve_k,
                       {"index": args.index, "half_life": args.half_life, "recency_unit": unit}, tune=args.tune,
                       embedding_cache=args.embedding_cache, observations=_observer(args))
        name = args.name or Path(args.turns).resolve().parent.name
        info = {"encoder": args.encoder, "turns": len(turns), "queries": len(queries),
                "sessions": len({t["session_id"] for t in turns}), "recency": f"{args.half_life or 'default'} "
                f"{unit}", "weights_chosen_by": "nested leave-one-session-out (tuned (nested loo))" if args.tune else
                "fixed (no method was tuned on these queries)", **({"loo_weights": res["loo_weights"]}
                                                                     if "loo_weights" in res else {})}
        out = metrics_json(res, methods, info, data=name)
        out["per_query"] = res["per_query"]
        if "observations" in res:
            out["observations"] = res["observations"]
        out["wall_s"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(args.out, out, indent=1)
        for title, table in out["tables"].items():
            print(title)
            for row in table:
                print(json.dumps(row))
        return 0
    if args.cmd == "add" and args.jsonl:
        from mmemory.memory.store import import_turns

        given = [flag for flag, v in (("--text", args.text), ("--image", args.image), ("--caption", args.caption),
                                      ("--turn", args.turn), ("--timestamp", args.timestamp)) if v]
        if given:
            raise CliError(f"--jsonl adds the file's turns; {', '.join(given)} would be ignored. Fix: give --jsonl "
                           "alone, or one memory with --text")
        check_utf8(args.jsonl, "--jsonl", args.tolerate_torn_tail)
        with _store(args, create=True) as s:
            print(json.dumps(import_turns(s, args.jsonl, torn_tail=args.tolerate_torn_tail)))
        return 0
    if args.cmd == "add":
        with _store(args, create=True) as s:
            mid = s.add(args.text, session=args.session, turn=args.turn, timestamp=args.timestamp,
                        speaker=args.speaker, image=args.image, caption=args.caption, saliency=args.saliency)
            print(json.dumps({"id": mid}))
        return 0
    if args.cmd == "search":
        with _store(args) as s:
            hits = s.search(query_text=args.text, query_image=args.image, k=args.k, weights=args.weights,
                            session=args.session, now=args.now,
                            update_access=False if args.no_access_update else None)
            for h in hits:
                print(json.dumps({"score": round(h.score, 4), "components": {c: round(v, 4) for c, v in
                                                                            h.components.items()},
                                  **{k: v for k, v in h.memory.__dict__.items()}}, ensure_ascii=False))
        return 0
    if args.cmd == "stats":
        with _store(args, encoder=False) as s:
            print(json.dumps(s.stats(), indent=1))
        return 0
    if args.cmd == "forget":  # needs no encoder: nothing is encoded
        with _store(args, encoder=False) as s:
            gone = s.forget(now=args.now, threshold=args.threshold, strength_hours=args.strength_hours,
                            dry_run=args.dry_run)
            print(json.dumps({"forgotten": gone, "dry_run": args.dry_run}))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
