"""`predict_counts`: ask the counting VLM "How many people are in this image?" about every frame (config
counting.generation), greedy and batched, before fine-tuning (`adapter_dir` None) or after it (a LoRA adapter from
`finetune_counting`).

    rows = predict_counts(model_path, adapter_dir, items, CountingGenerationConfig(), "predictions.json")

Writes `[{"id", "count_true", "answer", "count_pred"}]` (one row per item, in order) atomically; `count_pred` is
`mmemory.counting.answers.parse_count` of the answer (an int, or None when the answer names no count: the
evaluation counts it as wrong). The prompt is the training prompt exactly (the same
chat template, question and BOS handling), and the batch is left-padded so that every answer starts right after
its prompt.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mmemory.config import StrictConfig, check_types
from mmemory.counting.answers import parse_count
from mmemory.counting.model import LLAVA_CHAT_TEMPLATE, QUESTION, load_counting_model, user_message
from mmemory.counting.train import item_fields, load_image
from mmemory.io import atomic_write_json

logger = logging.getLogger(__name__)


@dataclass
class CountingGenerationConfig(StrictConfig):
    """Generation settings: config counting.generation."""

    SECTION = "counting.generation"

    max_new_tokens: int = 8  # "There are 12 people.</s>" is 6 tokens with the toy tokenizer (~9 with Llama's)
    batch_size: int = 32  # frames per generate() call
    load_in_4bit: bool = False  # bitsandbytes NF4 base weights (the paper preset: true)
    dtype: str = "auto"  # 4-bit compute dtype: auto (bfloat16 from compute capability 8.0, else float16) or a name

    def __post_init__(self):
        check_types(self)  # a value of the wrong type is refused here, naming its key


def load_for_prediction(model_path: str, adapter_dir: str | Path | None, load_in_4bit: bool = False,
                        dtype: str = "auto"):
    """(model, processor): the base model, with the LoRA adapter applied (merged unless 4-bit) when given."""
    model, processor = load_counting_model(model_path, load_in_4bit, dtype=dtype)
    if adapter_dir:
        from peft import PeftModel

        if not (Path(adapter_dir) / "adapter_config.json").exists():
            raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json; run the finetune_counting rule first")
        model = PeftModel.from_pretrained(model, str(adapter_dir))
        if not load_in_4bit:
            model = model.merge_and_unload()
    processor.chat_template = LLAVA_CHAT_TEMPLATE
    processor.tokenizer.padding_side = "left"
    return model.eval(), processor


def predict_counts(model_path: str, adapter_dir: str | Path | None, items, cfg: CountingGenerationConfig,
                   out_json: str | Path | None = None, question: str = QUESTION) -> list[dict]:
    """Greedy answers to `question` for every frame in `items`; written to `out_json` (when given) and returned."""
    import torch

    model, processor = load_for_prediction(model_path, adapter_dir, cfg.load_in_4bit, cfg.dtype)
    device = next(model.parameters()).device
    prompt = processor.apply_chat_template([user_message(question)], add_generation_prompt=True, tokenize=False)
    fields = [item_fields(it) for it in items]
    rows, t0 = [], time.time()
    with tqdm(total=len(fields), desc="predict counts", unit="frame") as bar:
        for i in range(0, len(fields), cfg.batch_size):
            chunk = fields[i:i + cfg.batch_size]
            batch = processor(text=[prompt] * len(chunk), images=[[load_image(p)] for _, _, p in chunk],
                              padding=True, return_tensors="pt", add_special_tokens=False).to(device)
            with torch.inference_mode():
                out = model.generate(**batch, max_new_tokens=cfg.max_new_tokens, do_sample=False, num_beams=1)
            texts = processor.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            for (item_id, count, _), text in zip(chunk, texts):
                row = {"id": item_id, "count_true": count, "answer": text.strip()}
                row["count_pred"] = parse_count(row["answer"])
                rows.append(row)
            bar.update(len(chunk))
    elapsed = time.time() - t0
    logger.info("predict_counts (%s): %d frames in %.1f s (%.1f frames/s)", "adapter " + str(adapter_dir)
                if adapter_dir else "untuned", len(rows), elapsed, len(rows) / max(elapsed, 1e-9))
    if out_json:
        atomic_write_json(out_json, rows, indent=1)
    return rows
