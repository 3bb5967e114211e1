"""`python -m mmemory.coref train`: fine-tune a causal LM on coref dialogues (`mmemory.coref.train.train_coref`).

    python -m torch.distributed.run --standalone --nproc_per_node N -m mmemory.coref train --model M \
        --train train.json --val val.json --out model/ --checkpoints ckpt/ --metrics train_metrics.json \
        --config '{"epochs": 10, "learning_rate": 0.003}' --threads 1 --log-file train.log

Without torchrun (`python -m mmemory.coref train ...`) it runs as one process. `--config` is a JSON object of
coref.train settings (`CorefTrainConfig`; an unknown key is refused by name). `--log-file` sends rank 0's log (and
the Trainer's) to a file; the other ranks log warnings to stderr. Write `--log-file`, not `--log`, after torchrun:
torchrun's own parser takes `--log` for an abbreviation of its `--log-dir` / `--logs-specs` and stops ("ambiguous
option"); `--log` is accepted only as an alias for runs without torchrun. Bad input (a `--config` that is not a JSON
object of the right keys and types, a `--model` that is neither a model directory nor a hub id in the local cache
while the hub is offline, a data file that is missing, not UTF-8 JSON or not in the schema) ends with one line on
stderr, naming the file or setting and the fix, and exit code 2; a missing argument gets argparse's usage and exit
code 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

PROG = "python -m mmemory.coref"


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def setup_logging(log_path: str | None) -> None:
    """Rank 0: INFO to `log_path` when given (and to this attempt's copy, `mmemory.io.attempt_log_path`), else to
    stderr. Other ranks: warnings to stderr, tagged with the rank."""
    import transformers

    rank = _rank()
    fmt = logging.Formatter(f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path and rank == 0:
        # appended, not truncated, and not also on stderr: a rule may send stderr to the same file (2>> log)
        # the attempt's own copy too: Snakemake deletes the log before it reruns the job (mmemory.io)
        from mmemory.io import attempt_log_path

        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        copy = attempt_log_path(log_path)
        copy.parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_path, mode="a", encoding="utf-8"),
                    logging.FileHandler(copy, mode="a", encoding="utf-8")]
    for h in handlers:
        h.setFormatter(fmt)
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, handlers=handlers, force=True)
    # the Trainer's own messages (resuming, epochs, evaluation) go through the same handlers
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    transformers.utils.logging.set_verbosity(logging.INFO if rank == 0 else logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fine-tune a causal LM on prompt -> answer (loss on the answer only)")
    t.add_argument("--model", required=True, help="base model directory (save_pretrained) or hub id")
    t.add_argument("--train", required=True, help="train dialogues (coref JSON)")
    t.add_argument("--val", default=None, help="val dialogues (coref JSON) for choosing the epoch")
    t.add_argument("--out", required=True, help="directory of the fine-tuned model and tokenizer")
    t.add_argument("--checkpoints", required=True, help="checkpoint directory (resumed after a kill)")
    t.add_argument("--metrics", default=None, help="train_metrics.json to write (rank 0)")
    t.add_argument("--config", default="{}", help="JSON object of coref.train settings (CorefTrainConfig)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    # --log-file, not --log: torchrun reads an abbreviated --log as its own --log-dir and stops
    t.add_argument("--log-file", "--log", dest="log", default=None, help="log file (rank 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)  # a missing or unknown argument: argparse's usage and exit code 2
    from mmemory.config import ConfigError
    from mmemory.coref.data import CorefError
    from mmemory.hub import ModelNotFoundError, check_model

    def refuse(msg: str) -> int:
        print(f"{PROG} {a.command}: error: {' '.join(str(msg).split())}", file=sys.stderr)
        return 2

    try:
        values = json.loads(a.config)
    except (json.JSONDecodeError, RecursionError) as e:
        return refuse(f"--config is not valid JSON ({e}). Fix: give an object such as '{{\"epochs\": 10}}'")
    if not isinstance(values, dict):
        return refuse(f"--config is a JSON {type(values).__name__}, not an object. Fix: give an object such as "
                      "'{\"epochs\": 10}'")
    from mmemory.coref.train import CorefTrainConfig, train_coref

    from mmemory.coref.data import load_coref

    try:  # bad input is found before torch.distributed starts and before the logging set-up: one line, not N
        cfg = CorefTrainConfig.from_dict(values)
        check_model(a.model, "--model")
        for path in filter(None, (a.train, a.val)):
            load_coref(path, strict=True)
    except (ConfigError, ModelNotFoundError, CorefError) as e:
        return refuse(e)
    if a.threads is not None and a.threads < 1:
        return refuse(f"--threads {a.threads}: give 1 or more")
    setup_logging(a.log)
    try:
        train_coref(a.model, a.train, a.val, a.out, a.checkpoints, cfg, a.metrics, threads=a.threads)
    except (CorefError, ConfigError, ModelNotFoundError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError, PermissionError) as e:
        return refuse(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
