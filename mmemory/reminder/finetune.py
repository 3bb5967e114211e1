"""`finetune_vlm`: LoRA-tune a Gemma-3 VLM on the teacher's `<reminder>` data (config reminder.finetune).

Both backends train on the same chat examples (`chat_example`: system instruction, user [image, conversation],
assistant response), with the loss on the assistant response only, and write a PEFT adapter plus the processor:

- `hf`: transformers + peft + TRL `SFTTrainer` (optionally 4-bit through bitsandbytes); runs anywhere, and is what
  the embedded default uses on the tiny Gemma-3.
- `unsloth`: Unsloth's `FastVisionModel` (4-bit, gradient checkpointing "unsloth") with
  `UnslothVisionDataCollator`, as in the seeds' gemma3_finetuning.py; CUDA only (Unsloth raises without a GPU).
- `auto`: unsloth when CUDA and the unsloth package are present, else hf.

LoRA follows the seeds: r=16, alpha=16, dropout 0, bias none, on vision and language layers, attention and MLP.
Training resumes from the newest checkpoint in `checkpoint_dir` only after a kill: the directory carries a
`mmemory.fingerprint.Run` stamp, and checkpoints of another fingerprint, or of a run that finished (a rerun because
the adapter is missing or forced), are cleared and training starts from step 0. `train_loss` is the mean over every
step of the run, including the steps before a resume (the Trainer's own figure covers only the steps of its call).
"""
from __future__ import annotations

import importlib.util
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mmemory.config import StrictConfig
from mmemory.fingerprint import Fingerprint, Run, items_digest, model_digest, remove
from mmemory.reminder.prompts import PromptBook, ReminderConfig, Sample, training_messages
from mmemory.training import latest_checkpoint, log_at_saves_callback, whole_run_loss

logger = logging.getLogger(__name__)

CONFIG_FILE = "finetune_config.json"  # the FinetuneConfig that made an adapter, saved beside it
TRAINING_META = "reminder_training.json"  # how the adapter's prompts were built (read by predict_reminder)
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj", "out_proj")  # Gemma-3 text and SigLIP attention
MLP = ("gate_proj", "up_proj", "down_proj", "fc1", "fc2")  # Gemma-3 text MLP and SigLIP MLP


@dataclass
class FinetuneConfig(StrictConfig):
    """LoRA fine-tuning settings: config reminder.finetune (defaults: config.yaml's; the seeds' values in comments).
    Saved as finetune_config.json beside the adapter it made."""

    SECTION = "reminder.finetune"

    backend: str = "auto"  # auto | hf | unsloth
    with_instruction: bool = False  # train (and so prompt) the adapter with the instruction as system text
    memory_share: float = 0.5  # share of training examples given a memory block (0: never, as the seeds)
    load_in_4bit: bool = False  # hf: bitsandbytes 4-bit base weights (QLoRA); unsloth: its 4-bit loading
    dtype: str = "auto"  # CUDA compute dtype: auto (bfloat16 from compute capability 8.0, else float16) or a name
    r: int = 16  # LoRA rank (seeds: 16)
    lora_alpha: float = 16  # LoRA scaling numerator (seeds: 16)
    lora_dropout: float = 0.0  # LoRA dropout (seeds: 0)
    finetune_vision_layers: bool = True  # LoRA on the vision tower
    finetune_language_layers: bool = True  # LoRA on the language model
    finetune_attention_modules: bool = True  # LoRA on attention projections
    finetune_mlp_modules: bool = True  # LoRA on MLP projections
    learning_rate: float = 5.0e-3  # peak learning rate (the toy stand-in; chosen on val, docs/reminder.md; seeds: 1e-5)
    epochs: float = 5  # passes over the teacher data (seeds: 3)
    batch_size: int = 16  # per-device batch size (seeds: 2)
    grad_accum: int = 1  # gradient accumulation steps (seeds: 4)
    warmup_steps: int = 5  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay (seeds: 0.01)
    lr_scheduler: str = "linear"  # transformers scheduler name
    optim: str = "adamw_torch"  # transformers optimizer name (seeds on GPU: adamw_8bit)
    max_length: int | None = 1024  # truncate training sequences to this many tokens
    logging_steps: int = 5  # log the loss every this many optimizer steps
    seed: int = 0  # training seed: one of config train_seeds, set by the workflow (the seeds' random_state: 3407)


def lora_target_regex(cfg: FinetuneConfig) -> str:
    """A peft `target_modules` regex choosing vision/language towers and attention/MLP projections, as Unsloth's
    finetune_* switches do."""
    towers = [t for t, on in (("vision_tower", cfg.finetune_vision_layers),
                              ("language_model", cfg.finetune_language_layers)) if on]
    mods = (ATTENTION if cfg.finetune_attention_modules else ()) + (MLP if cfg.finetune_mlp_modules else ())
    if not towers or not mods:
        raise ValueError("reminder.finetune: enable at least one of vision/language layers and one of "
                         "attention/MLP modules")
    return rf".*({'|'.join(towers)}).*\.({'|'.join(mods)})$"


def chat_example(sample: Sample, response: str, book: PromptBook, image, with_instruction: bool = True,
                 memories: list[dict] | None = None) -> dict:
    """One training example in the seeds' chat shape: {"messages": [system, user(image, text), assistant]}, with
    the PIL image inside the user content. The user text is exactly the `finetuned` variant's prompt (with
    `memories`, the `finetuned_memory` one)."""
    pc = training_messages(sample, response, book, with_instruction, memories)
    messages = [dict(m) for m in pc["prompt"]] + pc["completion"]
    for m in messages:
        if m["role"] == "user":
            m["content"] = [dict(c, image=image) if c["type"] == "image" else c for c in m["content"]]
    return {"messages": messages}


def to_prompt_completion(example: dict) -> dict:
    """A `chat_example` as TRL's conversational prompt-completion row with string contents and an `images` list."""
    images, prompt = [], []
    for m in example["messages"][:-1]:
        text = "".join(c["text"] for c in m["content"] if c["type"] == "text")
        images += [c["image"] for c in m["content"] if c["type"] == "image"]
        prompt.append({"role": m["role"], "content": text})
    reply = "".join(c["text"] for c in example["messages"][-1]["content"] if c["type"] == "text")
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": reply}], "images": images}


def choose_backend(name: str) -> str:
    import torch

    if name == "auto":
        has_unsloth = "unsloth" in sys.modules or importlib.util.find_spec("unsloth") is not None
        return "unsloth" if torch.cuda.is_available() and has_unsloth else "hf"
    if name not in ("hf", "unsloth"):
        raise ValueError(f"reminder.finetune.backend {name!r}: use auto, hf or unsloth")
    return name


def prepare_checkpoint_dir(checkpoint_dir: str | Path, fp: Fingerprint | str) -> Run:
    """Keep checkpoints only when they were left by an interrupted run of the same fingerprint `fp` (data, settings,
    model files); otherwise clear them and log why, so that a rerun never resumes an old or a finished run."""
    d = Path(checkpoint_dir)
    run = Run(d / "run.json", fp, "finetune_vlm")
    run.begin(clear=lambda: remove(d))
    d.mkdir(parents=True, exist_ok=True)
    return run


def examples_digest(examples: list[dict]) -> str:
    """Content digest of chat examples: every text part and the pixels of every image."""
    import hashlib

    def part(c):
        if c.get("type") == "image":
            im = c.get("image")
            pixels = None if im is None else hashlib.blake2b(im.tobytes(), digest_size=16).hexdigest()
            return ["image", None if im is None else [im.mode, list(im.size), pixels]]
        return [c.get("type"), c.get("text")]

    return items_digest([m["role"], [part(c) for c in m["content"]] if isinstance(m["content"], list)
                         else m["content"]] for e in examples for m in e["messages"])


def _sft_config(cfg: FinetuneConfig, checkpoint_dir: str, **kw):
    import torch
    from trl import SFTConfig

    from mmemory.precision import amp_flags

    cuda = torch.cuda.is_available()
    args = dict(
        output_dir=checkpoint_dir, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler, optim=cfg.optim, logging_steps=cfg.logging_steps, seed=cfg.seed,
        max_length=cfg.max_length, save_strategy="epoch", save_total_limit=1, report_to=["tensorboard"],
        remove_unused_columns=False, use_cpu=not cuda, dataloader_num_workers=0, disable_tqdm=False,
        # bf16 only where the GPU runs it natively (compute capability >= 8.0); fp16 on older GPUs (a 2080 Ti)
        **amp_flags(cfg.dtype, what="reminder.finetune.dtype"),
    )
    args.update(kw)
    return SFTConfig(**args)


def finetune_hf(examples: list[dict], model_path: str, out_dir: str, checkpoint_dir: str, cfg: FinetuneConfig) -> dict:
    """transformers + peft + TRL SFTTrainer (prompt-completion, loss on the completion only)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTTrainer

    from mmemory.precision import resolve_dtype, torch_dtype

    processor = AutoProcessor.from_pretrained(model_path)
    kwargs = {}
    if cfg.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype(resolve_dtype(cfg.dtype, what="reminder.finetune.dtype")))
    model = AutoModelForImageTextToText.from_pretrained(model_path, **kwargs)
    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      target_modules=lora_target_regex(cfg), task_type="CAUSAL_LM")
    dataset = Dataset.from_list([to_prompt_completion(e) for e in examples])
    trainer = SFTTrainer(model=model, args=_sft_config(cfg, checkpoint_dir, completion_only_loss=True),
                         train_dataset=dataset, processing_class=processor, peft_config=lora)
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    logger.info("hf backend: %d LoRA parameters trainable of %d", n_trainable, trainer.model.num_parameters())
    return _train_and_save(trainer, processor, out_dir, checkpoint_dir, n_trainable)


def finetune_unsloth(examples: list[dict], model_path: str, out_dir: str, checkpoint_dir: str,
                     cfg: FinetuneConfig) -> dict:
    """Unsloth FastVisionModel (the seeds' recipe). Needs CUDA and the unsloth env (envs/unsloth.yaml)."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("reminder.finetune.backend unsloth needs a CUDA GPU (Unsloth raises NotImplementedError "
                           "without one); use backend hf or auto on this machine")
    try:
        from unsloth import FastVisionModel
        from unsloth.trainer import UnslothVisionDataCollator
    except ImportError as e:
        raise RuntimeError("the unsloth backend needs the unsloth env: snakemake --use-conda (envs/unsloth.yaml)") from e
    from trl import SFTTrainer

    model, processor = FastVisionModel.from_pretrained(
        model_path, load_in_4bit=cfg.load_in_4bit, use_gradient_checkpointing="unsloth")
    model = FastVisionModel.get_peft_model(
        model, finetune_vision_layers=cfg.finetune_vision_layers,
        finetune_language_layers=cfg.finetune_language_layers,
        finetune_attention_modules=cfg.finetune_attention_modules, finetune_mlp_modules=cfg.finetune_mlp_modules,
        r=cfg.r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none", random_state=cfg.seed,
        use_rslora=False, loftq_config=None)
    FastVisionModel.for_training(model)
    collator = UnslothVisionDataCollator(model, processor, train_on_responses_only=True,
                                         instruction_part="<start_of_turn>user\n",
                                         response_part="<start_of_turn>model\n")
    args = _sft_config(cfg, checkpoint_dir, dataset_text_field="",
                       dataset_kwargs={"skip_prepare_dataset": True})
    trainer = SFTTrainer(model=model, args=args, train_dataset=examples, processing_class=processor.tokenizer,
                         data_collator=collator)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return _train_and_save(trainer, processor, out_dir, checkpoint_dir, n_trainable)


def _train_and_save(trainer, processor, out_dir: str, checkpoint_dir: str, n_trainable: int) -> dict:
    resume = latest_checkpoint(checkpoint_dir)  # only an interrupted run's checkpoints survive prepare_checkpoint_dir
    if resume:
        logger.info("resuming from %s", resume)
    if hasattr(trainer, "add_callback"):
        trainer.add_callback(log_at_saves_callback())
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    elapsed = time.time() - t0
    trainer.save_model(out_dir)  # the PEFT adapter (adapter_config.json + adapter_model.safetensors)
    processor.save_pretrained(out_dir)
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    start = int(resume.rsplit("-", 1)[-1]) if resume else 0
    steps_now = trainer.state.global_step - start
    logger.info("trained %d steps (%d in this run) in %.1f s (%.2f steps/s)", trainer.state.global_step, steps_now,
                elapsed, steps_now / max(elapsed, 1e-9))
    loss = whole_run_loss(history)
    return {"steps": trainer.state.global_step, "steps_this_run": steps_now,
            "train_loss": float(result.training_loss) if loss is None else loss,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "trainable_params": n_trainable, "train_seconds": round(elapsed, 1), "resumed_from": resume}


def finetune_vlm(examples: list[dict], model_path: str, out_dir: str, checkpoint_dir: str, cfg: FinetuneConfig,
                 fp: Fingerprint | str | None = None) -> dict:
    """Fine-tune with the configured backend; returns training figures for metrics.json. `fp` fingerprints the
    data, settings and model files (None: built here from the examples, `cfg` and the model's files): only an
    interrupted run of the same fingerprint is resumed; anything else starts from step 0."""
    from dataclasses import replace

    if not examples:
        raise ValueError("no training examples: the teacher accepted nothing (see the rejects file)")
    backend = choose_backend(cfg.backend)
    fp = Fingerprint.coerce(fp) if fp is not None else Fingerprint(
        inputs={"examples": examples_digest(examples)}, settings={"cfg": asdict(cfg)},
        models={"vlm": model_digest(model_path)})
    stamp = prepare_checkpoint_dir(checkpoint_dir, replace(fp, settings={**fp.settings, "backend": backend}))
    logger.info("finetune_vlm: backend %s, %d examples, %s", backend, len(examples), asdict(cfg))
    run = finetune_unsloth if backend == "unsloth" else finetune_hf
    stats = run(examples, model_path, out_dir, checkpoint_dir, cfg)
    cfg.save(Path(out_dir) / CONFIG_FILE)
    stamp.finish()  # the adapter is written: a rerun (adapter missing or forced) trains again from step 0
    return {"backend": backend, "examples": len(examples), **stats}


def run_finetune(data_jsonl: str, train_json: str, model: str, cfg: FinetuneConfig, book: PromptBook,
                 adapter_dir: str, checkpoint_dir: str, metrics_path: str,
                 include_caption: bool = ReminderConfig.include_caption,
                 memory_top_k: int = ReminderConfig.memory_top_k) -> dict:
    """The finetune_vlm rule: teacher rows -> chat examples with their images -> LoRA adapter + processor, with
    `cfg` saved beside it. A share `cfg.memory_share` of the examples (seeded by `cfg.seed`) carries a memory block
    (`simulated_memories`, at most memory_top_k entries) so that `finetuned_memory` and `finetuned_caption` are
    prompted in a format the adapter has seen."""
    import numpy as np
    from PIL import Image

    from mmemory.fingerprint import file_digests, files_digest, obj_digest
    from mmemory.io import atomic_write_json, read_jsonl
    from mmemory.reminder.prompts import make_sample, simulated_memories
    from mmemory.visdial import load_visdial

    split = load_visdial(train_json)
    dialogs = split.by_image_id()
    with_instruction = cfg.with_instruction
    rows = read_jsonl(data_jsonl)
    rng = np.random.default_rng(cfg.seed)
    examples, with_memories = [], 0
    for n, row in enumerate(rows, 1):
        d = dialogs.get(row["image_id"])
        if d is None:
            raise ValueError(f"{data_jsonl}:{n}: image_id {row['image_id']} is not in {train_json}; regenerate "
                             "the teacher data for this training split")
        sample = make_sample(split, d, row["round"], include_caption)
        if sample.conversation != row["conversation"]:
            raise ValueError(f"{data_jsonl}:{n}: the conversation differs from the one rebuilt from {train_json} "
                             f"(image_id {row['image_id']}, round {row['round']}); regenerate the teacher data")
        image = Image.open(sample.image_path).convert("RGB") if sample.image_path else None
        memories = None
        if rng.random() < cfg.memory_share:
            memories = simulated_memories(split, d, row["round"], memory_top_k, rng)
            with_memories += 1
        examples.append(chat_example(sample, row["response"], book, image, with_instruction, memories))
    # the base model's files are part of the fingerprint: a rebuilt model never resumes a stale adapter
    fp = Fingerprint(
        inputs={**file_digests(data_jsonl, train_json), "images": files_digest(
            d.get("image_path") for d in (dialogs.get(r["image_id"]) for r in rows)),
                "prompts": obj_digest(book.instruction if with_instruction else None)},
        settings={"cfg": asdict(cfg), "memory_top_k": memory_top_k, "caption": include_caption},
        models={"vlm": model_digest(model)})
    stats = finetune_vlm(examples, model, adapter_dir, checkpoint_dir, cfg, fp)
    stats["examples_with_memory_block"] = with_memories
    # the backend and the 4-bit switch name the base the adapter was trained on: predict_reminder loads the same one
    atomic_write_json(Path(adapter_dir) / TRAINING_META,
                      {"with_instruction": with_instruction, "instruction": book.instruction, "base_model": model,
                       "backend": stats["backend"], "load_in_4bit": cfg.load_in_4bit})
    atomic_write_json(metrics_path, stats, indent=2)
    return stats
