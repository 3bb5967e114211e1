"""`predict_reminder`: generate responses for the evaluation samples with one variant (config reminder.variants).

Every variant answers the same samples (the last round of each val dialogue) from the same conversation; only the
instruction differs (see `mmemory.reminder.prompts`). `finetuned` and `finetuned_memory` load the PEFT adapter
on the base VLM. Before any generation, `check_no_leak` proves that no prompt contains its target answer line.

Output: seed-compatible JSON `[{image_id, conversation, response}]` and raw generations (JSONL, with the exact
prompt text). Generations are appended to a progress file batch by batch, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from mmemory.io import atomic_write_json, atomic_write_text
from mmemory.reminder.generate import Progress
from mmemory.reminder.prompts import PromptBook, Sample, build_prompt

logger = logging.getLogger(__name__)


class LeakError(AssertionError):
    """An evaluated prompt contains the answer it is scored against."""


@dataclass
class GenerationConfig:
    """Decoding settings (config reminder.generation)."""

    max_new_tokens: int = 30  # the seeds' limit
    num_beams: int = 1  # beam search width (seeds: 5)
    batch_size: int = 8  # prompts per generate() call
    load_in_4bit: bool = False  # load the base VLM in 4-bit (bitsandbytes)


def check_no_leak(samples: Sequence[Sample], prompts: Sequence[str]) -> None:
    """Raise LeakError unless every rendered prompt holds the shared conversation, which has exactly round-1
    answers and ends with the question; nothing after it (the generation prompt) mentions the target; and nothing
    before it (instruction, memories) pairs the evaluated question with its answer."""
    import re

    from mmemory.reminder.response import fold

    for s, p in zip(samples, prompts):
        at = p.rfind(s.conversation)
        if at < 0:
            raise LeakError(f"image_id {s.image_id}: the prompt does not contain the shared conversation")
        if not s.conversation.endswith(f"Q: {s.question.strip()}"):
            raise LeakError(f"image_id {s.image_id}: the conversation does not end with the evaluated question")
        n_answers = sum(line.startswith("A: ") for line in s.conversation.splitlines())
        if n_answers != s.round - 1:
            raise LeakError(f"image_id {s.image_id}: the conversation for round {s.round} holds {n_answers} answers")
        target = re.escape(fold(s.target).lower())
        tail = fold(p[at + len(s.conversation):]).lower()
        if target and re.search(rf"(^|\W){target}($|\W)", tail):
            raise LeakError(f"image_id {s.image_id}: the held-out answer {s.target!r} follows the question")
        pair = re.escape(f"Q: {s.question.strip()}") + r"\s*\n\s*" + re.escape(f"A: {s.target.strip()}")
        if re.search(pair, p[:at]):
            raise LeakError(f"image_id {s.image_id}: the prompt pairs the evaluated question with its answer")


def load_vlm(model_path: str, adapter: str | None = None, load_in_4bit: bool = False, device: str | None = None):
    """(model, processor) loaded by path; with `adapter`, the PEFT adapter is applied on top (and merged)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = {}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    if adapter and not (Path(adapter) / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter}: no adapter_config.json; run the finetune_vlm rule first")
    processor = AutoProcessor.from_pretrained(adapter or model_path)
    model = AutoModelForImageTextToText.from_pretrained(model_path, **kwargs)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if not load_in_4bit:
            model = model.merge_and_unload()
    if not load_in_4bit:
        model = model.to(device)
    return model.eval(), processor


def render_prompts(processor, samples: Sequence[Sample], variant: str, book: PromptBook | None,
                   memories: dict[int, list[dict]] | None = None, top_k: int | None = None,
                   finetuned_instruction: bool = True) -> list[str]:
    """The exact prompt text each sample is generated from (chat template applied, generation prompt added)."""
    out = []
    for s in samples:
        mems = None
        if variant == "finetuned_memory":
            mems = (memories or {}).get(s.image_id)
            if mems is None:
                raise KeyError(f"memory context has no entry for image_id {s.image_id}; the memory stage must "
                               "write one list (possibly empty) per val dialogue")
            mems = mems[:top_k] if top_k else mems
        messages = build_prompt(s, variant, book, memories=mems, with_image=bool(s.image_path),
                                finetuned_instruction=finetuned_instruction)
        out.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return out


def predict_reminder(samples: Sequence[Sample], variant: str, model_path: str, out_json: str | Path,
                     raw_jsonl: str | Path, progress_dir: str | Path, fp: str, book: PromptBook | None,
                     gen: GenerationConfig, adapter: str | None = None,
                     memories: dict[int, list[dict]] | None = None, memory_top_k: int | None = None,
                     finetuned_instruction: bool = True) -> dict:
    """Generate (resumably) for every sample, then write the seed-format JSON and the raw JSONL atomically."""
    import torch
    from PIL import Image

    model, processor = load_vlm(model_path, adapter, gen.load_in_4bit)
    prompts = render_prompts(processor, samples, variant, book, memories, memory_top_k, finetuned_instruction)
    check_no_leak(samples, prompts)
    progress = Progress(Path(progress_dir) / "generations.jsonl", fp)
    done = progress.keys()
    todo = [(s, p) for s, p in zip(samples, prompts) if s.key not in done]
    logger.info("variant %s: %d samples, %d already generated", variant, len(samples), len(samples) - len(todo))
    processor.tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    t0, n_tokens = time.time(), 0
    with tqdm(total=len(todo), desc=f"predict {variant}", unit="sample") as bar:
        for i in range(0, len(todo), gen.batch_size):
            chunk = todo[i:i + gen.batch_size]
            images = [[Image.open(s.image_path).convert("RGB")] for s, _ in chunk] if chunk[0][0].image_path else None
            batch = processor(text=[p for _, p in chunk], images=images, padding=True, return_tensors="pt",
                              add_special_tokens=False).to(device)
            with torch.inference_mode():
                out = model.generate(**batch, max_new_tokens=gen.max_new_tokens, num_beams=gen.num_beams,
                                     do_sample=False)
            new = out[:, batch["input_ids"].shape[1]:]
            texts = processor.tokenizer.batch_decode(new, skip_special_tokens=True)
            for (s, p), ids, text in zip(chunk, new, texts):
                n = int((ids != processor.tokenizer.pad_token_id).sum())
                n_tokens += n
                progress.append({"key": s.key, "image_id": s.image_id, "round": s.round, "variant": variant,
                                 "conversation": s.conversation, "prompt": p, "response": text.strip(),
                                 "new_tokens": n})
            bar.update(len(chunk))
    elapsed = time.time() - t0
    if todo:
        logger.info("generation throughput: %.1f samples/s, %.0f tokens/s", len(todo) / max(elapsed, 1e-9),
                    n_tokens / max(elapsed, 1e-9))
    by_key = {r["key"]: r for r in progress.rows}
    rows = [by_key[s.key] for s in samples]
    atomic_write_json(out_json, [{"image_id": r["image_id"], "conversation": r["conversation"],
                                  "response": r["response"]} for r in rows], indent=2)
    atomic_write_text(raw_jsonl, "".join(json.dumps({k: v for k, v in r.items() if k != "key"},
                                                    ensure_ascii=False) + "\n" for r in rows))
    return {"variant": variant, "n": len(rows), "generated_now": len(todo),
            "seconds": round(elapsed, 1), "adapter": adapter}
