"""`train_coref`: fine-tune a causal LM on coref prompt -> answer, the loss on the answer only (config coref.train).

    python -m torch.distributed.run --standalone --nproc_per_node N -m mmemory.coref train --model M \
        --train train.json --val val.json --out model/ --checkpoints ckpt/ --metrics train_metrics.json \
        --config '{"epochs": 10}' --threads 1 --log-file train.log

(or `python -m mmemory.coref train ...` for one process; `accelerate launch --config_file
resources/coref/accelerate_ddp.yaml -m mmemory.coref train ...` works the same way.)

Examples. Each dialogue is `format_prompt(d)` tokenised with the tokenizer's special tokens (Llama's BOS), then the
target tokenised without them, then EOS. The target is the answer's whole option, `format_target(d)`
(" D) the mug in B's photo"; `target: option`), its words alone (" the mug in B's photo"; `target: text`), or
only the label (" D"; `target: label`). Labels are -100 on the prompt, so the
loss falls on the target and its EOS. A sequence longer than `max_length` loses prompt tokens from the left (after
BOS); the target is never cut.

Processes. The HF `Trainer` runs unchanged under torchrun / accelerate with N processes: DDP by default (gloo on
the CPU, NCCL on GPUs), DeepSpeed when `deepspeed` names a JSON config (resources/coref/ds_zero3.json: ZeRO-3 for an
8B full fine-tune), FSDP when `fsdp` is set. Every process sees its own shard of the train set each epoch (the
Trainer's dataloader is sharded by accelerate). Which examples each rank saw is recorded: every train example
carries its index in the train file, the collator notes the indices it batches, and at the end of the first epoch
this call trains the notes are gathered to rank 0 (`accelerate.utils.gather_object`) and written to the metrics under
`shards`. When the train set does not divide into world_size x batch_size, accelerate completes the last round of
batches with examples from the start of the shuffled order, so a few indices then appear twice.

Choosing on val: with `select_on_val` the val loss (answer tokens) is computed after every epoch and the epoch with
the lowest one is the model written (`load_best_model_at_end`, metric eval_loss).

Resume: one checkpoint per epoch in `checkpoint_dir`, with a `mmemory.fingerprint.Run` stamp keyed by the train and
val content, the settings (and the world size) and the base model's files. Only an interrupted run of the same
fingerprint resumes from its last checkpoint; anything else (another fingerprint, or a finished run rerun because its
model is missing or forced) starts from step 0. Rank 0 alone writes the stamp, the metrics and the final model
directory; every rank takes part in `save_model` (ZeRO-3 gathers the weights for it). The model directory is written
to a hidden sibling and renamed: whole or not at all.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mmemory.config import ConfigError, StrictConfig, check_types
from mmemory.coref.data import CorefError, Dialogue, load_coref
from mmemory.coref.prompts import format_prompt, format_target
from mmemory.fingerprint import Fingerprint, Run, items_digest, model_digest, remove
from mmemory.io import atomic_write_json
from mmemory.training import latest_checkpoint, log_at_saves_callback, whole_run_loss

logger = logging.getLogger(__name__)

CONFIG_FILE = "coref_train_config.json"  # the CorefTrainConfig that made a model, saved beside it
TARGETS = ("option", "text", "evidence", "label")
IGNORE = -100  # label of a token without loss (prompt, padding)


@dataclass
class CorefTrainConfig(StrictConfig):
    """Fine-tuning settings: config coref.train. The defaults are the embedded default's (tiny random Llamas must
    learn the toy task on the CPU); `PAPER_TRAIN` holds the seed's values. Saved as coref_train_config.json beside
    the model it made."""

    SECTION = "coref.train"

    learning_rate: float = 2.0e-3  # peak learning rate (seed: 2e-5; a tiny model needs a large one)
    epochs: float = 8  # passes over the train dialogues (seed: 30)
    warmup_steps: int = 20  # linear warm-up steps (seed: 100)
    weight_decay: float = 0.0  # AdamW weight decay (seed: 0.01)
    batch_size: int = 16  # per-device batch size, train and val (seed: 2)
    grad_accum: int = 1  # gradient accumulation steps (seed: 4)
    lr_scheduler: str = "cosine"  # transformers scheduler name (linear, cosine, constant_with_warmup, ...)
    fp16: bool = False  # fp16 mixed precision (seed: true); ignored on the CPU
    max_length: int = 512  # longest sequence in tokens; longer prompts lose tokens from the left, never the target
    select_on_val: bool = True  # val loss every epoch; the epoch with the lowest is the model written
    save_total_limit: int = 1  # epoch checkpoints kept besides the best one (an 8B ZeRO-3 checkpoint is ~130 GB)
    logging_steps: int = 10  # log the train loss every this many optimizer steps
    deepspeed: str | None = None  # a DeepSpeed JSON config (e.g. resources/coref/ds_zero3.json); None: plain DDP
    fsdp: str = ""  # transformers fsdp option (e.g. "full_shard auto_wrap"); "": no FSDP
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (saves memory on an 8B)
    target: str = "evidence"  # evidence (toy): " that red one = red mug -> the mug in B's photo"; text; option; label
    seed: int = 0  # training seed (one of config train_seeds, set by the workflow)

    def __post_init__(self):
        check_types(self)  # {"epochs": "abc"} is refused here, naming the key, not deep in the Trainer
        if self.target not in TARGETS:
            raise ConfigError(f"config {self.SECTION}: target {self.target!r} is not one of {TARGETS}")
        if self.deepspeed and self.fsdp:
            raise ConfigError(f"config {self.SECTION}: set deepspeed or fsdp, not both")
        if self.max_length < 8 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError(f"config {self.SECTION}: max_length must be at least 8, batch_size and grad_accum at "
                              "least 1")
        if self.deepspeed and not Path(self.deepspeed).is_file():
            raise ConfigError(f"config {self.SECTION}: deepspeed config {self.deepspeed!r} is not a file; give the "
                              "path of a DeepSpeed JSON (resources/coref/ds_zero3.json) or null")


# config/paper.yaml coref.train: the seed's settings (8 A100s, per-device batch 2 x grad accum 4 x 8 GPUs = 64
# dialogues a step). The seed names no scheduler, sequence length or checkpointing: linear is transformers' default,
# 2048 tokens holds the longest seed dialogue with room to spare, and gradient checkpointing fits an 8B in 80 GB.
PAPER_TRAIN = """\
coref:
  train:
    learning_rate: 2.0e-5
    epochs: 30
    warmup_steps: 100
    weight_decay: 0.01
    batch_size: 2
    grad_accum: 4
    lr_scheduler: linear          # not stated by the seed: transformers' default
    fp16: true
    max_length: 2048              # not stated by the seed
    deepspeed: resources/coref/ds_zero3.json
    gradient_checkpointing: true  # not stated by the seed
    target: option                # the seed's answer line, "D) ..."
"""


# ------------------------------------------------------------------------------------------------- examples

def format_label_target(d: Dialogue) -> str:
    """The short target: a space and the answer's label (" D")."""
    return f" {d.answer}"


def target_text(d: Dialogue, target: str = "option") -> str:
    """The training target of `d` (without EOS): its answer option in format `option`, `text` or `evidence`, or its
    label."""
    if target not in TARGETS:
        raise ValueError(f"coref target {target!r}: choose from {TARGETS}")
    return format_label_target(d) if target == "label" else format_target(d, target)


def encode_example(tokenizer, d: Dialogue, max_length: int, target: str = "option") -> dict:
    """{input_ids, labels, truncated} of one dialogue: prompt (with the tokenizer's special tokens) + target + EOS,
    labels -100 on the prompt. Too long: prompt tokens are dropped from the left, after a leading BOS."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; the target must end with one (set tokenizer.eos_token)")
    prompt = tokenizer(format_prompt(d), add_special_tokens=True)["input_ids"]
    answer = tokenizer(target_text(d, target), add_special_tokens=False)["input_ids"] + [eos]
    keep_head = 1 if prompt and tokenizer.bos_token_id is not None and prompt[0] == tokenizer.bos_token_id else 0
    room = max_length - len(answer)
    truncated = len(prompt) > room
    if truncated:
        if room <= keep_head:
            raise ValueError(f"dialogue {d.dialog_id!r}: its target alone is {len(answer)} tokens, no room for the "
                             f"prompt in max_length {max_length}; raise coref.train.max_length")
        prompt = prompt[:keep_head] + prompt[len(prompt) - (room - keep_head):]
    return {"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer, "truncated": truncated}


class CorefDataset:
    """Encoded examples for the Trainer; train examples carry their index in the train file (for the shard record)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class PadCollator:
    """Pads a batch on the LEFT (input ids with `pad_id`, labels with -100, attention mask 0) and notes the train
    indices it batches in `seen`. With `keep_logits` (a model whose forward takes `logits_to_keep`, as transformers'
    causal LMs do) every answer ends the row, so the batch asks for the logits of its last K positions only (K: the
    longest answer + 1) and its labels are cut to them: the LM head and the loss skip the prompt, whose tokens carry
    no loss (the toy stand-ins train ~15% faster; a 128k-vocabulary model saves batch x prompt x vocabulary logits).
    Rotary positions are relative, so left padding changes no attention score."""

    def __init__(self, pad_id: int, keep_logits: bool = False):
        self.pad_id = pad_id
        self.keep_logits = keep_logits
        self.seen: list[int] = []

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        self.seen += [int(b["index"]) for b in batch if "index" in b]
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for k, b in enumerate(batch):
            m = len(b["input_ids"])
            ids[k, n - m:] = torch.tensor(b["input_ids"])
            labels[k, n - m:] = torch.tensor(b["labels"])
            mask[k, n - m:] = 1
        out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if self.keep_logits:
            answer = max(sum(x != IGNORE for x in b["labels"]) for b in batch)
            keep = min(n, answer + 1)  # the logit before an answer's first token predicts it
            out.update(labels=labels[:, n - keep:], logits_to_keep=keep)
        return out


def takes_logits_to_keep(model) -> bool:
    """Whether `model`'s forward computes the logits of the last K positions only (`logits_to_keep`)."""
    import inspect

    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _shard_callback(collator: PadCollator):
    """A TrainerCallback that keeps the train indices this rank batched in the first epoch the call trains."""
    from transformers import TrainerCallback

    class ShardRecord(TrainerCallback):
        def __init__(self):
            self.epoch, self.indices = None, None

        def on_epoch_begin(self, args, state, control, **kw):
            collator.seen = []

        def on_epoch_end(self, args, state, control, **kw):
            if self.indices is None:
                self.epoch, self.indices = round(state.epoch) - 1, list(collator.seen)

    return ShardRecord()


def shard_summary(per_rank: list[dict], n_train: int) -> dict:
    """The shard record of metrics.json: each rank's indices and count, and whether they are disjoint and cover
    the train set."""
    all_idx = [i for r in per_rank for i in r["indices"]]
    return {"epoch": per_rank[0]["epoch"] if per_rank else None, "per_rank": per_rank,
            "n_seen": [len(r["indices"]) for r in per_rank],
            "disjoint": len(all_idx) == len(set(all_idx)), "covers": set(all_idx) == set(range(n_train))}


# ------------------------------------------------------------------------------------------------- training

def dialogues_digest(dialogues: list[Dialogue]) -> str:
    """Content digest of dialogues (everything the schema holds, in order)."""
    return items_digest(d.to_dict() for d in dialogues)


def training_args(cfg: CorefTrainConfig, checkpoint_dir: str, evaluate: bool):
    """The TrainingArguments of a run: one checkpoint per epoch, the val loss each epoch when `evaluate`. Built
    before the model is loaded, so that ZeRO-3 partitions the weights while loading."""
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1  # launched by torchrun / accelerate with N processes
    # transformers >= 5.x renames gradient_checkpointing to activation_checkpointing (the old name warns)
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return TrainingArguments(
        output_dir=checkpoint_dir, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay, lr_scheduler_type=cfg.lr_scheduler, fp16=cfg.fp16 and cuda,
        logging_steps=cfg.logging_steps, seed=cfg.seed, data_seed=cfg.seed,
        save_strategy="epoch", save_total_limit=cfg.save_total_limit, save_only_model=False,
        eval_strategy="epoch" if evaluate else "no", load_best_model_at_end=evaluate,
        metric_for_best_model="eval_loss" if evaluate else None, greater_is_better=False if evaluate else None,
        prediction_loss_only=True,  # never gather logits (batch x length x vocab) at evaluation
        **{ckpt: cfg.gradient_checkpointing,
           f"{ckpt}_kwargs": {"use_reentrant": False} if cfg.gradient_checkpointing else None},
        deepspeed=cfg.deepspeed, fsdp=cfg.fsdp, use_cpu=not cuda, ddp_backend="gloo" if several and not cuda else None,
        ddp_find_unused_parameters=False,  # a causal LM uses every parameter in each forward pass
        report_to="tensorboard", dataloader_drop_last=False, dataloader_num_workers=0, remove_unused_columns=False,
        disable_tqdm=False,
    )


def _barrier(args) -> None:
    """Wait for every process (nothing to wait for in a single process)."""
    import torch.distributed as dist

    if args.world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()


def train_coref(model_path: str, train_json: str | Path, val_json: str | Path | None, out_dir: str | Path,
                checkpoint_dir: str | Path, cfg: CorefTrainConfig | None = None,
                metrics_path: str | Path | None = None, threads: int | None = None) -> dict:
    """Fine-tune `model_path` on the dialogues of `train_json` (choosing the epoch on `val_json`); write the model and
    tokenizer to `out_dir` and the training figures to `metrics_path` (rank 0). Returns those figures (every rank)."""
    import torch
    from accelerate.utils import gather_object
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

    from mmemory.hub import check_model

    cfg = cfg or CorefTrainConfig()
    check_model(model_path, "coref model")  # a missing path or an uncached hub id offline: one clear error
    if threads:
        torch.set_num_threads(threads)
    train, _ = load_coref(train_json, strict=True)
    val = load_coref(val_json, strict=True)[0] if val_json else []
    if not train:
        raise CorefError(f"{train_json}: no training dialogues. Fix: rerun the coref_data rule (its data_report.json "
                         "says what was dropped)")
    evaluate = cfg.select_on_val and bool(val)
    checkpoint_dir = str(checkpoint_dir)
    args = training_args(cfg, checkpoint_dir, evaluate)  # starts the process group under torchrun / accelerate
    world, rank = args.world_size, args.process_index
    fp = Fingerprint(inputs={"train": dialogues_digest(train), "val": dialogues_digest(val)},
                     settings={"cfg": asdict(cfg), "world_size": world}, models={"llm": model_digest(model_path)})
    stamp = Run(Path(checkpoint_dir) / "run.json", fp, "train_coref")
    if rank == 0:  # keep checkpoints only of an interrupted run of this fingerprint; else clear them
        stamp.begin(clear=lambda: remove(checkpoint_dir))
    _barrier(args)
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [dict(encode_example(tokenizer, d, cfg.max_length, cfg.target), index=i) for i, d in enumerate(train)]
    val_rows = [encode_example(tokenizer, d, cfg.max_length, cfg.target) for d in val] if evaluate else []
    n_cut = sum(r.pop("truncated") for r in rows + val_rows)
    if n_cut:
        logger.warning("train_coref: %d of %d prompts cut from the left to max_length %d", n_cut,
                       len(rows) + len(val_rows), cfg.max_length)
    lengths = [len(r["input_ids"]) for r in rows]

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    collator = PadCollator(pad_id, keep_logits=takes_logits_to_keep(model))
    trainer = Trainer(model=model, args=args, train_dataset=CorefDataset(rows),
                      eval_dataset=CorefDataset(val_rows) if evaluate else None, data_collator=collator,
                      processing_class=tokenizer)
    shards = _shard_callback(collator)
    trainer.add_callback(shards)
    trainer.add_callback(log_at_saves_callback())  # each checkpoint's log history covers every step before it
    if rank == 0:
        logger.info("train_coref: %d train / %d val dialogues, %d processes, %d parameters, sequences %d-%d tokens, "
                    "%s", len(train), len(val), world, model.num_parameters(), min(lengths), max(lengths), asdict(cfg))
    resume = latest_checkpoint(checkpoint_dir)  # only an interrupted run's checkpoints survive the stamp
    if resume and rank == 0:
        logger.info("train_coref: resuming from %s", resume)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    elapsed = time.time() - t0
    start = int(resume.rsplit("-", 1)[-1]) if resume else 0
    steps_now = trainer.state.global_step - start

    per_rank = gather_object([{"rank": rank, "epoch": shards.epoch, "indices": shards.indices or []}])
    out = Path(out_dir)
    tmp = out.parent / f".{out.name}.partial"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # every rank: ZeRO-3 gathers the 16-bit weights; the main process writes
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    val_by_epoch = [{"epoch": h["epoch"], "step": h["step"], "val_loss": h["eval_loss"]}
                    for h in history if "eval_loss" in h]
    best = min(val_by_epoch, key=lambda v: v["val_loss"]) if val_by_epoch else None
    stats = {
        "model": str(model_path), "world_size": world, "n_train": len(train), "n_val": len(val),
        "steps": trainer.state.global_step, "steps_this_run": steps_now, "resumed_from": resume,
        "train_seconds": round(elapsed, 1),
        "examples_per_second": round(steps_now * cfg.batch_size * cfg.grad_accum * world / max(elapsed, 1e-9), 2),
        "train_loss": whole_run_loss(history) or float(result.training_loss),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "val_loss_by_epoch": val_by_epoch, "chosen_epoch": best["epoch"] if best else None,
        "chosen_checkpoint": trainer.state.best_model_checkpoint, "prompts_truncated": n_cut,
        "max_sequence_tokens": max(lengths), "shards": shard_summary(sorted(per_rank, key=lambda r: r["rank"]),
                                                                    len(train)),
        "config": asdict(cfg),
    }
    if rank == 0:
        logger.info("train_coref: %d steps (%d in this run) in %.1f s (%.2f steps/s, %.1f examples/s); train loss "
                    "%.4f; chosen epoch %s", stats["steps"], steps_now, elapsed, steps_now / max(elapsed, 1e-9),
                    stats["examples_per_second"], stats["train_loss"], stats["chosen_epoch"])
        tokenizer.save_pretrained(str(tmp))
        cfg.save(tmp / CONFIG_FILE)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        if metrics_path:
            atomic_write_json(metrics_path, stats, indent=2)
        stamp.finish()  # the model is written: a rerun (model missing or forced) trains again from step 0
    _barrier(args)
    return stats
