"""`finetune_counting`: teach a LLaVA to answer "How many people are in this image?" (config counting.train).

    stats = finetune_counting(model_path, train_items, val_items, "adapter/", "checkpoints/", "tensorboard/",
                              CountingTrainConfig(), "train_metrics.json")

Each frame becomes one TRL conversational row `{"images": [PIL image], "messages": [user (image, QUESTION),
assistant (answer_text(count))]}`. TRL's `SFTTrainer` builds its own vision-language collator
(`DataCollatorForVisionLanguageModeling`) from the processor; `assistant_only_loss` puts the loss on the answer only
(the chat template's `{% generation %}` span: the answer and its end-of-sequence token), so the prompt and the image
tokens get label -100. `max_length` is None by default: TRL truncates VLM sequences at `max_length`, which would cut
image tokens (TRL's docs: set max_length=None for VLMs). LoRA goes on both towers through peft; the projector is
trained fully (`modules_to_save`). Gradient checkpointing is on; losses go to TensorBoard under `tb_dir`.

Choosing on val: the val loss (answer tokens) is computed after every epoch, and the epoch with the lowest one is
the adapter that is written (`load_best_model_at_end`); `train_metrics.json` records every epoch's val loss and the
chosen epoch.

Resume: checkpoints (one per epoch) live in `checkpoint_dir` with a `mmemory.fingerprint.Run` stamp keyed by the
data's content (ids, counts and image bytes), the settings and the base model's files. Only an interrupted run of
the same fingerprint resumes from its last checkpoint; another fingerprint, or a finished run (a rerun because the
adapter is missing or forced), starts again from step 0. The adapter directory is written whole or not at all.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmemory.config import StrictConfig, check_types
from mmemory.counting.model import LLAVA_CHAT_TEMPLATE, QUESTION, answer_text, load_counting_model, user_message
from mmemory.fingerprint import Fingerprint, Run, items_digest, model_digest, remove
from mmemory.io import atomic_write_json
from mmemory.training import latest_checkpoint, log_at_saves_callback, point_tensorboard, whole_run_loss

logger = logging.getLogger(__name__)

CONFIG_FILE = "counting_train_config.json"  # the CountingTrainConfig that made an adapter, saved beside it
# LoRA on attention and MLP projections of both towers (CLIP: q/k/v/out_proj, fc1/fc2; Llama: q/k/v/o, gate/up/down)
BOTH_TOWERS = (r".*(vision_tower|language_model).*\."
               r"(q_proj|k_proj|v_proj|o_proj|out_proj|fc1|fc2|gate_proj|up_proj|down_proj)$")


@dataclass
class CountingTrainConfig(StrictConfig):
    """Fine-tuning settings: config counting.train. The defaults are the embedded default's (a tiny random LLaVA must
    learn to count in about a minute on one CPU thread); the paper preset (`PAPER_TRAIN`) holds the seed's values.
    Saved as counting_train_config.json beside the adapter it made."""

    SECTION = "counting.train"

    learning_rate: float = 3.0e-3  # peak learning rate (seed: 1.4e-5; the tiny random model needs a large one)
    epochs: float = 10  # passes over the train frames (seed: 1)
    batch_size: int = 16  # per-device batch size (seed: 8)
    grad_accum: int = 1  # gradient accumulation steps (seed: 1)
    warmup_ratio: float = 0.0  # share of the steps spent warming up (used when warmup_steps is 0)
    warmup_steps: int = 10  # linear warm-up steps (overrides warmup_ratio when > 0)
    lr_scheduler: str = "cosine"  # transformers scheduler name
    weight_decay: float = 0.0  # AdamW weight decay
    optim: str = "adamw_torch"  # transformers optimizer name
    r: int = 16  # LoRA rank
    lora_alpha: float = 32  # LoRA scaling numerator
    lora_dropout: float = 0.0  # LoRA dropout
    target_modules: str = BOTH_TOWERS  # peft target_modules: a regex over module names, or "all-linear"
    # trained fully and saved with the adapter: the projector, and the output layer (a random tiny model's logits
    # are too flat for LoRA alone to sharpen them)
    modules_to_save: list[str] = field(default_factory=lambda: ["multi_modal_projector", "lm_head"])
    load_in_4bit: bool = False  # bitsandbytes NF4 base weights (QLoRA); the seed: true
    dtype: str = "auto"  # compute dtype on CUDA: auto (bfloat16 from compute capability 8.0, else float16) or a name
    gradient_checkpointing: bool = True  # recompute activations in the backward pass (the seed: true)
    max_length: int | None = None  # None: never truncate (a truncation would cut image tokens)
    select_on_val: bool = True  # evaluate the val loss every epoch and keep the best epoch's adapter
    logging_steps: int = 5  # log the loss every this many optimizer steps (TensorBoard)
    report_to: str = "tensorboard"  # "tensorboard" or "none"
    push_to_hub: bool = False  # upload the adapter to the Hugging Face Hub after training (needs a network)
    hub_model_id: str | None = None  # the Hub repository for push_to_hub, e.g. "user/llava-1.5-7b-mall-counting"
    seed: int = 0  # training seed (one of config train_seeds, set by the workflow)

    def __post_init__(self):
        check_types(self)  # a value of the wrong type is refused here, naming its key


# config/paper.yaml counting (train and generation): the seed's hyperparameters (lr 1.4e-5, batch 8, 1 epoch, grad
# accum 1, gradient checkpointing, 4-bit, LoRA, TensorBoard), as overrides of the defaults above (config.yaml's):
# grad accum 1, r 16, alpha 32, dtype auto, gradient checkpointing and TensorBoard are those. The seed does not give
# its LoRA values: r 16, alpha 32 and dropout 0.05 are TRL's ModelConfig defaults, on every linear layer as TRL's
# LLaVA SFT example.
PAPER_TRAIN = """\
counting:
  model: llava-hf/llava-1.5-7b-hf   # a local copy of it (downloaded once)
  train:
    learning_rate: 1.4e-5
    epochs: 1
    batch_size: 8
    warmup_steps: 0
    lr_scheduler: linear
    lora_dropout: 0.05
    target_modules: all-linear
    modules_to_save: []
    load_in_4bit: true
    logging_steps: 10
  generation:
    max_new_tokens: 16
    batch_size: 8
    load_in_4bit: true
"""


def item_fields(item) -> tuple[str, int, str]:
    """(id, count, image path) of a data item: a dict or an object with id, count and image (or image_path/path)."""
    get = item.get if isinstance(item, dict) else (lambda k, d=None: getattr(item, k, d))
    path = get("image") or get("image_path") or get("path")
    if path is None or get("count") is None:
        raise KeyError(f"counting item {get('id')!r}: needs 'count' and 'image' (the frame's path); got {item!r}")
    return str(get("id")), int(get("count")), str(path)


def load_image(path: str):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def training_row(image, count: int, question: str = QUESTION) -> dict:
    """One TRL conversational vision row: the frame, the question, the answer."""
    return {"images": [image], "messages": [
        user_message(question), {"role": "assistant", "content": [{"type": "text", "text": answer_text(count)}]}]}


def items_content_digest(items) -> str:
    """Content digest of data items: id, count and the bytes of each frame (a re-drawn frame changes it)."""
    from mmemory.fingerprint import file_digest

    return items_digest([i, c, file_digest(p) if Path(p).is_file() else "missing"]
                        for i, c, p in map(item_fields, items))


def check_hub_reachable(cfg: CountingTrainConfig, timeout: float = 5.0) -> None:
    """Before any training: push_to_hub needs a repository id and a reachable Hub; fail with a clear error rather
    than hang or fail after the run."""
    if not cfg.push_to_hub:
        return
    if not cfg.hub_model_id:
        raise ValueError("counting.train.push_to_hub is on but hub_model_id is empty; set it (e.g. "
                         "user/llava-1.5-7b-mall-counting) or turn push_to_hub off")
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if flag or constants.HF_HUB_OFFLINE:
        raise RuntimeError("counting.train.push_to_hub is on but the Hub is offline (HF_HUB_OFFLINE=1); turn "
                           "push_to_hub off in config counting.train, or unset HF_HUB_OFFLINE on a machine with a "
                           "network and a token (huggingface-cli login)")
    import socket
    from urllib.parse import urlparse

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError as e:
        raise RuntimeError(f"counting.train.push_to_hub is on but {constants.ENDPOINT} cannot be reached ({e}); "
                           "turn push_to_hub off in config counting.train, or run where the Hub is reachable") from e


def prepare_checkpoint_dir(checkpoint_dir: str | Path, fp: Fingerprint) -> Run:
    """Keep checkpoints only when an interrupted run of the same fingerprint left them; else clear them."""
    d = Path(checkpoint_dir)
    run = Run(d / "run.json", fp, "finetune_counting")
    run.begin(clear=lambda: remove(d))
    d.mkdir(parents=True, exist_ok=True)
    return run


def sft_config(cfg: CountingTrainConfig, checkpoint_dir: str, evaluate: bool):
    """The TRL SFTConfig of a run: one checkpoint per epoch, the val loss each epoch when `evaluate`."""
    import torch
    from trl import SFTConfig

    from mmemory.precision import amp_flags

    cuda = torch.cuda.is_available()
    return SFTConfig(
        output_dir=checkpoint_dir, per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        warmup_steps=cfg.warmup_steps if cfg.warmup_steps > 0 else cfg.warmup_ratio,
        lr_scheduler_type=cfg.lr_scheduler, weight_decay=cfg.weight_decay, optim=cfg.optim,
        logging_steps=cfg.logging_steps, seed=cfg.seed, data_seed=cfg.seed,
        max_length=cfg.max_length, assistant_only_loss=True, completion_only_loss=False,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        save_strategy="epoch", save_total_limit=1,
        eval_strategy="epoch" if evaluate else "no", load_best_model_at_end=evaluate,
        metric_for_best_model="eval_loss" if evaluate else None, greater_is_better=False if evaluate else None,
        report_to=[] if cfg.report_to in ("none", "", None) else [cfg.report_to],
        push_to_hub=False,  # pushed once, after the best adapter is written (check_hub_reachable ran first)
        remove_unused_columns=False, use_cpu=not cuda, **amp_flags(cfg.dtype, what="counting.train.dtype"),
        dataloader_num_workers=0, disable_tqdm=False,
    )


def _write_adapter(trainer, processor, out_dir: str | Path, cfg: CountingTrainConfig, base_model: str) -> None:
    """The adapter, the processor and the settings, written to a sibling temp dir and renamed into place."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # adapter_config.json + adapter_model.safetensors (+ the projector: modules_to_save)
    processor.save_pretrained(str(tmp))
    cfg.save(tmp / CONFIG_FILE)
    atomic_write_json(tmp / "base_model.json", {"base_model": base_model})
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def training_rows(items) -> list[dict]:
    """The TRL rows of data items, with their frames loaded."""
    return [training_row(load_image(p), c) for _, c, p in map(item_fields, items)]


def make_trainer(model_path: str, train_items, val_items, checkpoint_dir: str | Path, cfg: CountingTrainConfig):
    """(SFTTrainer, processor) for a run: the model loaded (4-bit when asked), LoRA attached by the trainer, and
    TRL's own vision-language collator with the loss on the answer only."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTTrainer

    evaluate = cfg.select_on_val and bool(val_items)
    model, processor = load_counting_model(model_path, cfg.load_in_4bit, dtype=cfg.dtype, for_training=True,
                                           gradient_checkpointing=cfg.gradient_checkpointing)
    processor.chat_template = LLAVA_CHAT_TEMPLATE  # the {% generation %} span marks the answer for the loss
    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      target_modules=cfg.target_modules, modules_to_save=list(cfg.modules_to_save) or None,
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=sft_config(cfg, str(checkpoint_dir), evaluate),
                         train_dataset=Dataset.from_list(training_rows(train_items)),
                         eval_dataset=Dataset.from_list(training_rows(val_items)) if evaluate else None,
                         processing_class=processor, peft_config=lora)
    if cfg.load_in_4bit:
        # TRL casts every trainable parameter of a quantized model to bfloat16 (meant for the LoRA matrices), while
        # peft's k-bit preparation keeps the unquantized layers in float32: a fully trained module (modules_to_save)
        # must stay in float32 like its inputs. Where the compute dtype is float16 (a GPU older than Ampere), every
        # trainable tensor goes back to float32: the float16 GradScaler then updates float32 master weights
        from mmemory.precision import resolve_dtype

        fp16 = resolve_dtype(cfg.dtype, next(trainer.model.parameters()).device, cpu="bfloat16") == "float16"
        for name, param in trainer.model.named_parameters():
            if param.requires_grad and (fp16 or ".modules_to_save." in name):
                param.data = param.data.float()
    return trainer, processor


def finetune_counting(model_path: str, train_items, val_items, out_dir: str | Path, checkpoint_dir: str | Path,
                      tb_dir: str | Path, cfg: CountingTrainConfig, metrics_path: str | Path | None = None) -> dict:
    """LoRA-tune the counting VLM on `train_items` (choosing the epoch on `val_items`); write the adapter to
    `out_dir`, TensorBoard events to `tb_dir`, and the training figures to `metrics_path`. Returns those figures."""
    if not train_items:
        raise ValueError("finetune_counting: no training frames (see the data step's data_report.json)")
    check_hub_reachable(cfg)
    fp = Fingerprint(
        inputs={"train": items_content_digest(train_items), "val": items_content_digest(val_items or [])},
        settings={"cfg": asdict(cfg)}, models={"vlm": model_digest(model_path)})
    stamp = prepare_checkpoint_dir(checkpoint_dir, fp)
    trainer, processor = make_trainer(model_path, train_items, val_items, checkpoint_dir, cfg)
    point_tensorboard(trainer, tb_dir)
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    logger.info("finetune_counting: %d train / %d val frames, %d trainable of %d parameters, %s", len(train_items),
                len(val_items or []), n_trainable, trainer.model.num_parameters(), asdict(cfg))
    resume = latest_checkpoint(checkpoint_dir)  # only an interrupted run's checkpoints survive prepare_checkpoint_dir
    if resume:
        logger.info("resuming from %s", resume)
    trainer.add_callback(log_at_saves_callback())  # each checkpoint's log history covers every step before it
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    elapsed = time.time() - t0
    start = int(resume.rsplit("-", 1)[-1]) if resume else 0
    steps_now = trainer.state.global_step - start
    logger.info("trained %d steps (%d in this run) in %.1f s (%.2f steps/s, %.1f frames/s)", trainer.state.global_step,
                steps_now, elapsed, steps_now / max(elapsed, 1e-9),
                steps_now * cfg.batch_size * cfg.grad_accum / max(elapsed, 1e-9))
    _write_adapter(trainer, processor, out_dir, cfg, model_path)
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    val = [{"epoch": h["epoch"], "step": h["step"], "val_loss": h["eval_loss"]} for h in history if "eval_loss" in h]
    best = min(val, key=lambda v: v["val_loss"]) if val else None
    stats = {
        "train_frames": len(train_items), "val_frames": len(val_items or []), "steps": trainer.state.global_step,
        "steps_this_run": steps_now, "resumed_from": resume, "train_seconds": round(elapsed, 1),
        "train_loss": whole_run_loss(history) or float(result.training_loss), "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None, "trainable_params": n_trainable,
        "val_loss_by_epoch": val, "chosen_epoch": best["epoch"] if best else None,
        "chosen_checkpoint": trainer.state.best_model_checkpoint, "load_in_4bit": cfg.load_in_4bit,
        "tensorboard_dir": str(tb_dir),
    }
    if cfg.push_to_hub:
        trainer.model.push_to_hub(cfg.hub_model_id)
        processor.push_to_hub(cfg.hub_model_id)
        stats["hub_model_id"] = cfg.hub_model_id
    if metrics_path:
        atomic_write_json(metrics_path, stats, indent=2)
    stamp.finish()  # the adapter is written: a rerun (adapter missing or forced) trains again from step 0
    return stats
