"""`train_emr`: fine-tune the bridge (trainable parts from config) so that the frozen LM produces each round's ANSWER.

With `caption_epochs > 0` a captioning phase comes first (BLIP-2's generative pre-training): from one round's soft
prompt and no text, the LM writes the image's caption. On the toy default this is what makes the bridge carry the
image; trained on answers alone it collapsed to one soft prompt for every image (docs/emr.md).

    snakemake results/emr/after/s0/bridge.safetensors --cores 2   # or: train_emr(...) from Python

Checkpoints (`<out>/ckpt/last.pt`, loaded with `weights_only=True`) carry the step, the bridge, the optimizer and
scheduler, the RNG states (torch, CUDA, numpy, python) and every loss row so far. `<out>/ckpt/run.json` stamps them
with the run's fingerprint (`mmemory.fingerprint`: the content of train/val JSON and embeddings, the settings, the LM's
files) and whether the run finished. Only an interrupted run of the same fingerprint resumes (mid-epoch: the epoch's
batch order is a function of seed and epoch, finished batches are skipped, and the restored RNG states give the same
dropout masks, so the result equals an uninterrupted run's). Anything else, including a rerun of a finished run
(its outputs missing, or forced), trains from step 0 and says why in one line.
Train and val must not share an image id (checked here; a test pins it).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmemory.config import StrictConfig
from mmemory.emr.bridge import BridgeConfig, EMRBridge, save_bridge
from mmemory.emr.data import batch_embeddings, dialog_records, length_buckets
from mmemory.emr.lm import EmrConfig, TextCodec, answer_loss, load_llm
from mmemory.figures import save_figure
from mmemory.fingerprint import Fingerprint, Run, file_digest, file_digests, model_digest, remove
from mmemory.io import atomic_write_bytes, atomic_write_text
from mmemory.shards import ShardedEmbeddings
from mmemory.training import scalar_writer
from mmemory.visdial import load_visdial

logger = logging.getLogger(__name__)

VARIANT_OVERRIDES = {
    "after": {},
    "no_turn_pe": {"use_turn_pe": False},
    "no_memory_bank": {"use_memory_bank": False},
}


@dataclass
class TrainConfig(StrictConfig):
    """Optimisation settings: config emr.train (defaults: config.yaml's; the seeds' values in comments). `seed` is
    one of config train_seeds, set by the workflow. Saved in bridge_config.json with the bridge it trained."""

    SECTION = "emr.train"

    caption_epochs: float = 30  # captioning pre-training passes before answer training (seeds: 0, none)
    epochs: float = 4  # passes over the training dialogues with the answer as target (seeds: 2)
    batch_size: int = 16  # dialogues per step; every round of each is a sequence (seeds: 16)
    lr: float = 1e-3  # AdamW learning rate of the bridge
    llm_lr: float | None = 3e-3  # learning rate of the LM when emr.llm_trainable (None: lr)
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 10  # linear warm-up steps
    grad_clip: float = 1.0  # gradient-norm clip (0: off)
    eval_every: int = 25  # steps between val-loss evaluations
    ckpt_every: int = 25  # steps between checkpoints
    val_dialogs: int = 32  # val dialogues used for the val loss (a fixed subset)
    gradient_checkpointing: bool = False  # recompute the LM's activations in the backward pass (paper: true)
    loss_scale: str = "auto"  # auto (dynamic when the frozen LM computes in float16 on CUDA) | dynamic | none
    seed: int = 0  # bridge init and batch order

    def __post_init__(self):
        super().__post_init__()
        if self.loss_scale not in LOSS_SCALES:
            from mmemory.config import ConfigError

            raise ConfigError(f"config {self.SECTION}: loss_scale {self.loss_scale!r} is not one of "
                              f"{', '.join(LOSS_SCALES)}")


LOSS_SCALES = ("auto", "dynamic", "none")


def use_loss_scaling(loss_scale: str, llm_dtype: str, device: str, llm_trainable: bool = False) -> bool:
    """Whether the bridge's loss is scaled (torch.amp.GradScaler): "dynamic" always on CUDA, "none" never, "auto"
    when a frozen LM computes in float16 on CUDA, where the small gradients that reach the bridge through it would
    underflow. bfloat16 has float32's range and needs no scaling."""
    if torch.device(device).type != "cuda" or loss_scale == "none":
        return False
    return loss_scale == "dynamic" or (llm_dtype == "float16" and not llm_trainable)


def check_disjoint(train_ids, val_ids, train_path="train", val_path="val") -> None:
    """Train and val must not share an image id."""
    shared = set(train_ids) & set(val_ids)
    if shared:
        raise ValueError(f"{train_path} and {val_path} share {len(shared)} image ids (e.g. {sorted(shared)[:5]}); "
                         f"EMR needs disjoint train/val images")


def make_bridge(cfg: BridgeConfig, llm_hidden: int, seed: int) -> EMRBridge:
    """A freshly initialised bridge (deterministic in seed); loads the Q-Former checkpoint when configured."""
    torch.manual_seed(seed)
    bridge = EMRBridge(cfg, llm_hidden)
    if cfg.qformer_checkpoint:
        bridge.load_qformer_checkpoint(cfg.qformer_checkpoint)
    return bridge


def round_batches(records, codec: TextCodec):
    """Token ids per dialogue: (prompts per round, answers per round); the answer is the target."""
    return [([codec.prompt_ids(q) for q in r.questions], [codec.answer_ids(a) for a in r.answers]) for r in records]


def caption_loss(bridge, llm, recs, caption_toks, emb, pad_id, device, lead, rounds: list[int]):
    """Captioning pre-training (BLIP-2's generative stage, LLaVA's stage 1): from the soft prompt of one round per
    dialogue and no text prompt, the LM must produce the image's caption. A caption follows from the image alone,
    so unlike an answer it cannot be guessed from the question: the loss only falls if the soft prompt carries the
    image. rounds[i] is the 0-based round whose soft prompt dialogue i uses."""
    img, q = batch_embeddings(recs, emb, device)
    soft = bridge.query_outputs(img, q)  # [B, R, Q, E]
    soft = soft[torch.arange(len(recs), device=soft.device), torch.as_tensor(rounds, device=soft.device)]
    return answer_loss(llm, soft, [[] for _ in recs], caption_toks, pad_id, lead)


def _loss(bridge, llm, recs, toks, emb, pad_id, device, lead):
    img, q = batch_embeddings(recs, emb, device)
    soft = bridge.query_outputs(img, q)  # [B, R, Q, E]
    B, R = soft.shape[:2]
    prompts = [p for t in toks for p in t[0]]
    answers = [a for t in toks for a in t[1]]
    return answer_loss(llm, soft.reshape(B * R, *soft.shape[2:]), prompts, answers, pad_id, lead)


@torch.no_grad()
def val_loss(bridge, llm, recs, toks, emb, pad_id, device, batch_size, lead) -> float:
    bridge.eval()
    was_training = llm.training
    llm.eval()
    total, n = 0.0, 0
    for i in range(0, len(recs), batch_size):
        loss = _loss(bridge, llm, recs[i:i + batch_size], toks[i:i + batch_size], emb, pad_id, device, lead)
        total += float(loss) * len(recs[i:i + batch_size])
        n += len(recs[i:i + batch_size])
    bridge.train()
    llm.train(was_training)
    return total / max(n, 1)


def rng_state() -> dict:
    """Every RNG a training step may draw from (dropout: torch / CUDA), as tensors and lists that
    `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                       int(has_gauss), float(gauss)],
             "python": [version, list(internal), gauss_next]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state.get("cuda") is not None and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            logger.warning("checkpoint has CUDA RNG states for %d devices, this machine has %d; not restored",
                           len(state["cuda"]), torch.cuda.device_count())


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["step", "epoch", "split", "loss"])
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def plot_loss(rows: list[dict], png: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for split, style, label in (("caption", "-", "caption pre-training"), ("train", "-", "train (answer)"),
                                ("val", "o-", "val (answer)")):
        pts = [(r["step"], r["loss"]) for r in rows if r["split"] == split]
        if pts:
            ax.plot(*zip(*pts), style, label=label, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, png)


def train_emr(train_json, val_json, train_emb, val_emb, llm_path: str, out_dir, bridge: dict, train: dict,
              variant: str = "after", llm_4bit: bool = EmrConfig.llm_4bit, llm_dtype: str = EmrConfig.llm_dtype,
              llm_trainable: bool = EmrConfig.llm_trainable, prompt_template: str = EmrConfig.prompt_template,
              device: str = EmrConfig.device) -> dict:
    """Train one variant's bridge; writes bridge.safetensors, bridge_config.json, loss.csv, loss.png in out_dir, and
    the same losses as TensorBoard scalars in out_dir/tensorboard (loss/caption, loss/train, loss/val)."""
    if variant not in VARIANT_OVERRIDES:
        raise ValueError(f"unknown EMR variant {variant!r}; trainable variants: {', '.join(VARIANT_OVERRIDES)}")
    from mmemory.precision import resolve_dtype

    out_dir = Path(out_dir)
    ckpt_path = out_dir / "ckpt" / "last.pt"
    bcfg = BridgeConfig.from_dict({**bridge, **VARIANT_OVERRIDES[variant]})
    tcfg = TrainConfig.from_dict(train)
    llm_dtype = resolve_dtype(llm_dtype, device, what="emr.llm_dtype")  # auto: bfloat16 from compute capability 8.0

    train_split, val_split = load_visdial(train_json), load_visdial(val_json)
    check_disjoint([d["image_id"] for d in train_split.dialogs], [d["image_id"] for d in val_split.dialogs],
                   train_json, val_json)
    temb, vemb = ShardedEmbeddings(train_emb), ShardedEmbeddings(val_emb)
    # what a checkpoint must match to be resumed: the content of the data and embeddings, the settings, the LM's files
    fp = Fingerprint(
        inputs={**file_digests(train_json, val_json), "train embeddings": file_digest(temb.index_path),
                "val embeddings": file_digest(vemb.index_path)},
        settings={"variant": variant, "bridge": asdict(bcfg), "train": asdict(tcfg), "llm_4bit": llm_4bit,
                  "llm_dtype": llm_dtype, "llm_trainable": llm_trainable, "prompt_template": prompt_template},
        models={"llm": model_digest(llm_path), "qformer": model_digest(bcfg.qformer_checkpoint)})
    run_config = {"variant": variant, "bridge": asdict(bcfg), "train": asdict(tcfg), "llm": llm_path,
                  "llm_files": fp.models["llm"], "llm_4bit": llm_4bit, "llm_trainable": llm_trainable,
                  "prompt_template": prompt_template, "train_json": str(train_json), "val_json": str(val_json),
                  "train_emb": temb.fingerprint, "val_emb": vemb.fingerprint,
                  "n_train_emb": len(temb), "n_val_emb": len(vemb), "fingerprint": fp.digest}
    if temb.dim != bcfg.embed_dim or vemb.dim != bcfg.embed_dim:
        raise ValueError(f"embeddings are {temb.dim}-d ({train_emb}) but emr.bridge.embed_dim={bcfg.embed_dim}; "
                         f"set embed_dim to the encoder's width")
    train_recs, skipped_train = dialog_records(train_split, temb)
    val_recs, _ = dialog_records(val_split, vemb)
    val_recs = val_recs[:tcfg.val_dialogs]

    llm, tok = load_llm(llm_path, llm_4bit, device, llm_dtype)
    if tcfg.gradient_checkpointing:  # transformers recomputes a layer only in train mode (the LM has no dropout)
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    codec = TextCodec(tok, prompt_template)
    model = make_bridge(bcfg, llm.get_input_embeddings().embedding_dim, tcfg.seed).to(device)
    if tcfg.gradient_checkpointing:  # the Q-Former runs over batch x rounds x queries tokens: recompute it too
        model.qformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    names = model.set_trainable()
    model.log_weights()
    params = [p for p in model.parameters() if p.requires_grad]
    if llm_trainable:  # toy only: the tiny LM is no pretrained LM (config emr.llm_trainable); paper: frozen
        if llm_4bit:
            raise ValueError("emr.llm_trainable cannot train a 4-bit LM; the paper setting keeps the LM frozen")
        for p in llm.parameters():
            p.requires_grad_(True)
        logger.warning("emr.llm_trainable: the causal LM (%s) is fine-tuned together with the bridge", llm_path)
    if not params:
        raise ValueError("emr.bridge.trainable selects no parameters: nothing to train")
    logger.info("variant %s: %d trainable tensors (%d params): %s", variant, len(names),
                sum(p.numel() for p in params), ", ".join(sorted({n.split('.')[0] for n in names})))
    groups = [{"params": params, "lr": tcfg.lr}]
    if llm_trainable:
        groups.append({"params": list(llm.parameters()), "lr": tcfg.llm_lr or tcfg.lr})
    opt = torch.optim.AdamW(groups, weight_decay=tcfg.weight_decay)
    scaling = use_loss_scaling(tcfg.loss_scale, llm_dtype, device, llm_trainable)
    scaler = torch.amp.GradScaler("cuda", enabled=scaling)
    logger.info("LM computes in %s%s; gradient checkpointing %s; loss scaling %s", llm_dtype,
                " (4-bit NF4 weights)" if llm_4bit else "", "on" if tcfg.gradient_checkpointing else "off",
                "dynamic" if scaling else "off")

    train_toks, val_toks = round_batches(train_recs, codec), round_batches(val_recs, codec)
    steps_per_epoch = len(length_buckets(train_recs, tcfg.batch_size))
    caption_steps = math.ceil(tcfg.caption_epochs * steps_per_epoch)
    total_steps = caption_steps + max(1, math.ceil(tcfg.epochs * steps_per_epoch))
    caption_toks = [codec.answer_ids(r.caption) for r in train_recs]
    if caption_steps and not all(r.caption.strip() for r in train_recs):
        missing = sum(not r.caption.strip() for r in train_recs)
        raise ValueError(f"emr.train.caption_epochs={tcfg.caption_epochs} needs a caption per training dialogue; "
                         f"{missing} dialogues of {train_json} have none (set caption_epochs: 0)")
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / tcfg.warmup_steps) if tcfg.warmup_steps else 1.0)

    step, rows, seconds_before = 0, [], 0.0
    run = Run(ckpt_path.parent / "run.json", fp, f"train_emr {variant}")
    if run.begin(clear=lambda: remove(ckpt_path)) and ckpt_path.exists():
        try:
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as e:  # not ours, or from an older version of this code
            logger.warning("%s cannot be loaded (%s); training %s from step 0", ckpt_path, e, variant)
            ck = None
        if ck is not None and ck.get("fingerprint") == fp.digest:
            model.load_state_dict(ck["bridge"])
            if llm_trainable:
                llm.load_state_dict(ck["llm"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            if ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            step, rows, seconds_before = ck["step"], ck["rows"], ck.get("seconds", 0.0)
            set_rng_state(ck["rng"])
            logger.info("resuming %s from %s at step %d/%d", variant, ckpt_path, step, total_steps)
        elif ck is not None:
            logger.warning("%s belongs to another run; training %s from step 0", ckpt_path, variant)
    resumed_from = step

    def save_ckpt():
        buf = io.BytesIO()
        torch.save({"fingerprint": fp.digest, "config": run_config, "step": step, "bridge": model.state_dict(),
                    "optimizer": opt.state_dict(), "llm": llm.state_dict() if llm_trainable else None,
                    "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "rows": rows, "rng": rng_state(),
                    "seconds": seconds_before + time.perf_counter() - t0}, buf)
        atomic_write_bytes(ckpt_path, buf.getvalue())
        _write_csv(out_dir / "loss.csv", rows)

    model.train()
    llm.train(llm_trainable or tcfg.gradient_checkpointing)
    pad, lead = tok.pad_token_id, codec.lead_ids()
    t0, seen = time.perf_counter(), 0
    bar = tqdm(total=total_steps, initial=step, desc=f"train_emr {variant}", unit="step")
    tb = scalar_writer(out_dir / "tensorboard")
    for r in rows:  # a resumed run's history, from its checkpoint
        tb.add_scalar(f"loss/{r['split']}", r["loss"], r["step"])
    if step == 0 and val_recs:
        rows.append({"step": 0, "epoch": 0.0, "split": "val",
                     "loss": val_loss(model, llm, val_recs, val_toks, vemb, pad, device, tcfg.batch_size, lead)})
        tb.add_scalar("loss/val", rows[-1]["loss"], 0)
    while step < total_steps:
        # phase 1 (step < caption_steps): captioning pre-training; phase 2: the answer. Each phase's epoch has its
        # own batch order (a function of seed, phase and epoch), so a resumed run replays the same batches.
        phase = "caption" if step < caption_steps else "train"
        local = step if phase == "caption" else step - caption_steps
        epoch = local // steps_per_epoch
        batches = length_buckets(train_recs, tcfg.batch_size,
                                 np.random.default_rng([tcfg.seed, epoch] + ([1] if phase == "caption" else [])))
        end = caption_steps if phase == "caption" else total_steps
        for b in batches[local - epoch * steps_per_epoch:]:
            if step >= end:
                break
            recs = [train_recs[i] for i in b]
            if phase == "caption":
                rounds = np.random.default_rng([tcfg.seed, step, 2]).integers(0, [len(r.questions) for r in recs])
                loss = caption_loss(model, llm, recs, [caption_toks[i] for i in b], temb, pad, device, lead,
                                    rounds.tolist())
            else:
                loss = _loss(model, llm, recs, [train_toks[i] for i in b], temb, pad, device, lead)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # scaled only when loss scaling is on (float16 LM on CUDA)
            if tcfg.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], tcfg.grad_clip)
            scaler.step(opt)  # skipped when a scaled gradient overflowed
            scaler.update()
            sched.step()
            step += 1
            seen += len(b)
            rows.append({"step": step, "epoch": round((local + 1) / steps_per_epoch, 4), "split": phase,
                         "loss": loss.item()})
            tb.add_scalar(f"loss/{phase}", rows[-1]["loss"], step)
            local += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if val_recs and (step % tcfg.eval_every == 0 or step == total_steps):
                vl = val_loss(model, llm, val_recs, val_toks, vemb, pad, device, tcfg.batch_size, lead)
                rows.append({"step": step, "epoch": round(local / steps_per_epoch, 4), "split": "val", "loss": vl})
                tb.add_scalar("loss/val", vl, step)
                el = time.perf_counter() - t0
                logger.info("step %d/%d %s %.4f val %.4f (%.1f dialogues/s)", step, total_steps, phase,
                            loss.item(), vl, seen / el if el else 0)
            if step % tcfg.ckpt_every == 0 or step == total_steps:
                save_ckpt()
    bar.close()
    tb.close()
    el = time.perf_counter() - t0
    if step and not ckpt_path.exists():
        save_ckpt()
    used_llm = llm_path
    if llm_trainable:
        used_llm = str(out_dir / "llm")
        llm.save_pretrained(used_llm)
        tok.save_pretrained(used_llm)
    save_bridge(model, out_dir, {"variant": variant, "step": step, "trainable": names + (["llm"] if llm_trainable
                                 else []), "llm": used_llm, "run_config": run_config})
    _write_csv(out_dir / "loss.csv", rows)
    plot_loss(rows, out_dir / "loss.png", f"EMR bridge ({variant})")
    train_rows = [r["loss"] for r in rows if r["split"] == "train"]
    val_rows = [r["loss"] for r in rows if r["split"] == "val"]
    cap_rows = [r["loss"] for r in rows if r["split"] == "caption"]
    summary = {"variant": variant, "steps": step, "caption_steps": caption_steps,
               "first_caption_loss": cap_rows[0] if cap_rows else None,
               "final_caption_loss": float(np.mean(cap_rows[-10:])) if cap_rows else None,
               "train_dialogues": len(train_recs),
               "skipped_train_dialogues": skipped_train, "val_dialogues_for_loss": len(val_recs),
               "first_val_loss": val_rows[0] if val_rows else None, "final_val_loss": val_rows[-1] if val_rows else None,
               "final_train_loss": train_rows[-1] if train_rows else None,
               "mean_train_loss": float(np.mean(train_rows)) if train_rows else None,
               "resumed_from_step": resumed_from, "steps_this_run": step - resumed_from,
               "seconds_this_run": round(el, 1), "train_seconds": round(seconds_before + el, 1),
               "dialogues_per_s": round(seen / el, 1) if el and seen else None}
    atomic_write_text(out_dir / "train_summary.json", json.dumps(summary, indent=2) + "\n")
    run.finish()  # the outputs are written: a rerun (outputs missing, or forced) trains again from step 0
    logger.info("train_emr %s done: %s", variant, summary)
    return summary
