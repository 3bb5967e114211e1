"""`pretrain_toy_vlm`: teach the tiny Gemma-3 stand-in what gemma-3-4b-it can already do before the seeds tune it.

The real Gemma-3 sees and reads: its SigLIP tower was pre-trained contrastively on image-text pairs, and the model
describes a picture, answers short questions about it, and answers questions about a text it is given. A randomly
initialised 64-wide Gemma-3 can do none of that, so its `<reminder>` LoRA could only learn the answer prior (every
test answer was "no"). This step pre-trains the stand-in the same way, on TRAIN content only, in three stages:

0. **Copy.** The text model learns to continue a repeated random token span (`mmemory.training.pretrain_copy`,
   as the coref stand-ins do): the in-context copying (induction heads) that a pretrained LM brings, and that
   reading a memory needs (find the object the question names among the notes, copy what follows it). It sees
   token ids only, no toy text. Without it, reading plateaued at about 0.4 exact match on val whatever the
   width, depth or steps (docs/reminder.md).
1. **SigLIP.** The vision tower is trained with SigLIP's sigmoid image-caption loss (`SiglipModel`, with a small text
   tower and an attention-pooling head that are dropped afterwards), as Gemma-3's own SigLIP was. Without it the
   tiny tower learnt colours only: a probe asking "what shape is the red object?" stayed at chance (0.32 of 200 val
   pictures after 400 steps), and 0.47 after 600 contrastive steps.
2. **Generative.** Every weight is trained on three abilities, each in Gemma-3's chat format (user turn, model turn):

- **caption**: [image] "describe the picture." -> the scene's caption;
- **vqa**: [image] a few "Q:/A:" lines about the picture, then "Q: <question>" -> the answer;
- **read**: notes of one to three pictures ("[picture] <caption>" lines mixed with other "question answer" notes),
  half the time beside another picture and a few Q:/A: lines about it, then a question about a described picture
  ("in the earlier picture, where was the green triangle?") -> "the green triangle was at the top left", which is
  in the notes, not in the picture shown; the answer names the object first, as an LLM answers, so that the place
  is what follows that name in the notes. Reading comprehension over a text context, which gemma-3-4b-it does
  zero-shot: what lets the real model use retrieved memories at all. It never sees a `<memories>` block, its
  numbering, a `<reminder>` or a toy dialogue's scene: those come with the seeds' fine-tuning on train dialogues.

The scenes are fresh toy scenes drawn from the TRAIN part of the scene space (`mmemory.toy.visdial.scene_split`
with the data's split shares), so no val or test picture, and no val or test (image, question, answer), is ever seen.
The model is scored before and after on val scenes (exact match of greedy answers per ability), and the scores go in
the stage's metrics as the stand-in's own "before fine-tuning" figures.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmemory.config import StrictConfig
from mmemory.toy.visdial import Obj, caption, earlier_question, qa_pool, render, sample_scene, scene_split
from mmemory.training import pretrain_copy

logger = logging.getLogger(__name__)

TASKS = ("caption", "vqa", "read")
DESCRIBE = "describe the picture."


@dataclass
class PretrainVLMConfig(StrictConfig):
    """Settings of the stand-in's pre-training (config reminder.toy_vlm)."""

    SECTION = "reminder.toy_vlm"

    scenes: int = 3000  # fresh train-split scenes rendered for pre-training
    steps: int = 600  # optimizer steps
    batch_size: int = 32  # examples per step
    lr: float = 3.0e-3  # AdamW peak learning rate (cosine to 10% after warm-up)
    warmup_steps: int = 50  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW weight decay
    task_weights: list = field(default_factory=lambda: [1.0, 3.0, 2.0])  # sampling weights: caption, vqa, read
    max_context_rounds: int = 3  # vqa and read: at most this many Q:/A: lines about the shown picture
    eval_scenes: int = 150  # val scenes scored before and after (each ability)
    siglip_steps: int = 400  # stage 1: contrastive steps of the vision tower (0: none)
    siglip_batch_size: int = 64  # image-caption pairs per contrastive step
    siglip_lr: float = 2.0e-3  # AdamW learning rate of the contrastive stage
    copy_steps: int = 3000  # stage 0: random-span copy steps of the text model (0: none)
    copy_span: int = 16  # longest random span
    copy_batch_size: int = 32  # sequences per copy step
    copy_lr: float = 1.0e-3  # AdamW peak learning rate of the copy stage
    copy_long_steps: int = 600  # then copy steps on long spans, so copying reaches across a memory block (0: none)
    copy_long_span: int = 128  # longest span of the long phase
    copy_long_batch_size: int = 8  # sequences per long copy step
    seed: int = 0  # scenes, task order and init of the run


def _scenes(n: int, split: str, shares: dict[str, float], max_objects: int, seed: int, tag: str) -> list[list[Obj]]:
    rng = random.Random(f"toy-vlm-{tag}-{seed}")
    out = []
    while len(out) < n:
        objs = sample_scene(rng, max_objects)
        if scene_split(objs, shares, seed) == split:
            out.append(objs)
    return out


def _read_example(scenes: list[list[Obj]], i: int, rng: random.Random,
                  max_dialog_lines: int = 9) -> tuple[str, str, int | None] | None:
    """One reading item: notes of 1-3 pictures ("[picture] <caption>" lines, the way a memory store writes a shared
    picture, mixed with other "question answer" notes), then a question about what the notes say. Half the items
    show another picture too, with up to `max_dialog_lines` Q:/A: lines about it after the notes, and then ask where
    an object of a described picture was ("in the earlier picture, where was the green triangle?" -> "the green
    triangle was at the top left"): the answer is in the notes, not in the picture shown.
    Returns (text, answer, index of the shown picture or None)."""
    k = rng.randint(1, 3)
    group = [scenes[i]] + [scenes[rng.randrange(len(scenes))] for _ in range(k - 1)]
    shown = rng.randrange(len(scenes)) if rng.random() < 0.5 else None
    if k == 1 and shown is None and rng.random() < 0.5:
        q, a = rng.choice(qa_pool(group[0], rng))
    else:
        pictures = group + ([scenes[shown]] if shown is not None else [])
        unique = [o for objs in group for o in objs if sum(any(p.name == o.name for p in pic) for pic in pictures) == 1]
        if not unique:
            return None
        o = rng.choice(unique)
        # the answer names the object, then copies what follows it in the notes: "the green triangle was at the
        # top left" (as an LLM answers; the `<reminder>` teacher recalls an earlier picture the same way)
        if shown is not None:
            q, a = earlier_question(o.name), f"the {o.name} was {o.where}"
        else:
            q, a = f"where is the {o.name}?", f"the {o.name} is {o.where}"
    notes = [f"[picture] {caption(s)}" for s in group]
    for _ in range(rng.randint(0, 2)):  # other notes: what was said about some picture
        oq, oa = rng.choice(qa_pool(scenes[rng.randrange(len(scenes))], rng))
        notes.append(f"{oq} {oa}")
    rng.shuffle(notes)
    dialog = []
    if shown is not None:
        pool = qa_pool(scenes[shown], rng)
        rng.shuffle(pool)
        dialog = [f"Q: {dq}\nA: {da}" for dq, da in pool[:rng.randint(0, max_dialog_lines)]]
    return "\n".join(notes + dialog) + f"\nQ: {q}", a, shown


def make_examples(scenes: list[list[Obj]], n: int, cfg: PretrainVLMConfig, rng: random.Random,
                  image_size: int) -> list[dict]:
    """`n` examples {task, image (PIL or None), text, answer}, tasks drawn with cfg.task_weights."""
    out = []
    while len(out) < n:
        task = rng.choices(TASKS, weights=cfg.task_weights)[0]
        i = rng.randrange(len(scenes))
        objs = scenes[i]
        if task == "caption":
            out.append({"task": task, "scene": i, "text": DESCRIBE, "answer": caption(objs)})
        elif task == "vqa":
            pool = qa_pool(objs, rng)
            rng.shuffle(pool)
            m = rng.randint(0, min(cfg.max_context_rounds, len(pool) - 1))
            lines = [f"Q: {q}\nA: {a}" for q, a in pool[:m]]
            q, a = pool[m]
            out.append({"task": task, "scene": i, "text": "\n".join(lines + [f"Q: {q}"]), "answer": a})
        else:
            ex = _read_example(scenes, i, rng, cfg.max_context_rounds)
            if ex is not None:
                out.append({"task": task, "scene": ex[2], "text": ex[0], "answer": ex[1]})
    return out


def _messages(ex: dict, answer: bool) -> list[dict]:
    user = ([{"type": "image"}] if ex["scene"] is not None else []) + [{"type": "text", "text": ex["text"]}]
    msgs = [{"role": "user", "content": user}]
    if answer:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": ex["answer"]}]})
    return msgs


def _batch(processor, examples: list[dict], images: list, with_answer: bool):
    """Tokenised batch, left-padded; with_answer: labels on the model turn only (the answer and its end-of-turn)."""
    tok = processor.tokenizer
    prompts = [processor.apply_chat_template(_messages(e, False), add_generation_prompt=True, tokenize=False)
               for e in examples]
    answers = [e["answer"] + "<end_of_turn>\n" for e in examples] if with_answer else [""] * len(examples)
    imgs = [[images[e["scene"]]] if e["scene"] is not None else [] for e in examples]
    kwargs = {"images": imgs} if any(e["scene"] is not None for e in examples) else {}
    batch = processor(text=[p + a for p, a in zip(prompts, answers)], padding=True, return_tensors="pt",
                      add_special_tokens=False, **kwargs)
    if with_answer:
        # left padding: each answer is its row's last tokens. Counting them with the tokenizer alone (no second
        # processor call over the images) gives the same labels (tests/test_toy_models.py) in about half the time
        if tok.padding_side != "left":
            raise ValueError("the toy VLM's batches are left-padded: set processor.tokenizer.padding_side = 'left'")
        labels = torch.full_like(batch["input_ids"], -100)
        for i, ids in enumerate(tok(answers, add_special_tokens=False)["input_ids"]):
            labels[i, -len(ids):] = batch["input_ids"][i, -len(ids):]
        batch["labels"] = labels
    return batch


@torch.no_grad()
def score(model, processor, examples: list[dict], images: list, batch_size: int = 50,
          max_new_tokens: int = 24) -> dict:
    """Greedy exact match per task (answers compared after stripping)."""
    model.eval()
    processor.tokenizer.padding_side = "left"
    hits: dict[str, list[int]] = {t: [] for t in TASKS}
    for task in TASKS:
        exs = [e for e in examples if e["task"] == task]
        for b in range(0, len(exs), batch_size):
            chunk = exs[b:b + batch_size]
            batch = _batch(processor, chunk, images, with_answer=False)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
            texts = processor.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            hits[task] += [int(t.strip() == e["answer"]) for t, e in zip(texts, chunk)]
    return {t: (float(np.mean(h)) if h else None) for t, h in hits.items()}


def siglip_pretrain(model, processor, scenes: list[list[Obj]], images: list, cfg: PretrainVLMConfig) -> dict:
    """Stage 1: the VLM's vision tower trained with SigLIP's sigmoid loss against a small text tower on the scenes'
    captions; the tower's weights go back into `model` (the text tower and pooling head are dropped)."""
    from transformers import SiglipConfig, SiglipModel, SiglipTextConfig

    tok = processor.tokenizer
    vision = model.config.vision_config.to_dict()
    vision["vision_use_head"] = True  # SiglipModel pools with its attention head; Gemma-3 uses every patch
    width = model.config.vision_config.hidden_size
    text = SiglipTextConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=4 * width,
                            num_hidden_layers=model.config.vision_config.num_hidden_layers,
                            num_attention_heads=model.config.vision_config.num_attention_heads,
                            max_position_embeddings=64, pad_token_id=tok.pad_token_id)
    siglip = SiglipModel(SiglipConfig(text_config=text.to_dict(), vision_config=vision))
    siglip.vision_model.load_state_dict(model.model.vision_tower.state_dict(), strict=False)
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    # left-padded to the longest caption (about 26 tokens; the text tower pools the last one, a real token), not
    # to the tower's 64 positions, so a step's text half is about 2.5 times shorter
    ids = tok([caption(s) for s in scenes], padding="longest", max_length=64, truncation=True,
              return_tensors="pt")["input_ids"]
    opt = torch.optim.AdamW(siglip.parameters(), lr=cfg.siglip_lr, weight_decay=0.01)
    rng = np.random.default_rng(cfg.seed)
    losses, t0 = [], time.perf_counter()
    siglip.train()
    for _ in tqdm(range(cfg.siglip_steps), desc="siglip (vision tower)", unit="step"):
        idx = torch.as_tensor(rng.choice(len(scenes), min(cfg.siglip_batch_size, len(scenes)), replace=False))
        loss = siglip(input_ids=ids[idx], pixel_values=pixels[idx], return_loss=True).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    missing, unexpected = model.model.vision_tower.load_state_dict(siglip.vision_model.state_dict(), strict=False)
    if missing or any(not k.startswith("head.") for k in unexpected):
        raise RuntimeError(f"siglip stage: the vision tower's weights do not match (missing {missing}, "
                           f"unexpected {unexpected})")
    return {"steps": cfg.siglip_steps, "first_loss": float(np.mean(losses[:20])) if losses else None,
            "last_loss": float(np.mean(losses[-20:])) if losses else None,
            "seconds": round(time.perf_counter() - t0, 1)}


def pretrain_toy_vlm(vlm_in: str, out_dir: str, shares: dict[str, float], image_size: int, max_objects: int,
                     cfg: PretrainVLMConfig) -> dict:
    """Pre-train the stand-in (module docstring) and save it with its processor; returns figures for metrics.json."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, get_cosine_with_min_lr_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    rng = random.Random(f"toy-vlm-{cfg.seed}")
    processor = AutoProcessor.from_pretrained(vlm_in)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(vlm_in)
    train_scenes = _scenes(cfg.scenes, "train", shares, max_objects, cfg.seed, "train")
    val_scenes = _scenes(cfg.eval_scenes, "val", shares, max_objects, cfg.seed, "val")
    train_images = [render(s, image_size) for s in train_scenes]
    val_images = [render(s, image_size) for s in val_scenes]
    val_ex = make_examples(val_scenes, 3 * cfg.eval_scenes, cfg, random.Random(f"toy-vlm-val-{cfg.seed}"), image_size)
    before = score(model, processor, val_ex, val_images)
    copy = None
    if cfg.copy_steps:
        copy = pretrain_copy(model, processor.tokenizer, cfg.copy_steps, cfg.copy_span, cfg.copy_batch_size,
                             cfg.copy_lr, cfg.seed)
        if cfg.copy_long_steps:
            copy["long"] = pretrain_copy(model, processor.tokenizer, cfg.copy_long_steps, cfg.copy_long_span,
                                         cfg.copy_long_batch_size, cfg.copy_lr, cfg.seed + 1)
    siglip = siglip_pretrain(model, processor, train_scenes, train_images, cfg) if cfg.siglip_steps else None
    examples = make_examples(train_scenes, cfg.steps * cfg.batch_size, cfg, rng, image_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_cosine_with_min_lr_schedule_with_warmup(opt, cfg.warmup_steps, cfg.steps, min_lr_rate=0.1)
    model.train()
    losses, t0 = [], time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="pretrain_toy_vlm", unit="step")
    for step in bar:
        chunk = examples[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        loss = model(**_batch(processor, chunk, train_images, with_answer=True)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    seconds = time.perf_counter() - t0
    after = score(model, processor, val_ex, val_images)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    logger.info("toy VLM pre-trained: %d steps in %.0f s, loss %.3f -> %.3f; val exact match before %s, after %s",
                cfg.steps, seconds, np.mean(losses[:20]), np.mean(losses[-20:]), before, after)
    return {"copy": copy, "siglip": siglip, "steps": cfg.steps, "examples": len(examples),
            "train_scenes": len(train_scenes),
            "first_loss": float(np.mean(losses[:20])), "last_loss": float(np.mean(losses[-20:])),
            "seconds": round(seconds, 1),
            "val_exact_match_before": before, "val_exact_match_after": after, "val_scenes": len(val_scenes),
            "abilities": {"caption": DESCRIBE + " -> caption", "vqa": "picture + Q:/A: lines -> answer",
                          "read": "1-3 picture descriptions as text -> answer"}}
