"""`predict_reminder`: generate responses for the evaluation samples with one variant (config reminder.variants).

Every variant answers the same samples (the last round of each val dialogue) from the same conversation; only the
instruction differs (see `mmemory.reminder.prompts`). `finetuned` and `finetuned_memory` load the PEFT adapter
on the base VLM. Before any generation, `check_no_leak` proves that no prompt contains its target answer line.

Output: seed-compatible JSON `[{image_id, conversation, response}]` and raw generations (JSONL, with the exact
prompt text). Generations are appended to a progress file batch by batch, so a killed run resumes where it stopped;
`fp` (`mmemory.fingerprint.Fingerprint`) keys the progress, and a finished run's progress is not reused.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from mmemory.config import StrictConfig
from mmemory.io import atomic_write_json, atomic_write_text
from mmemory.reminder.generate import Progress
from mmemory.reminder.prompts import MEMORY_VARIANTS, PromptBook, Sample, build_prompt

logger = logging.getLogger(__name__)


class LeakError(AssertionError):
    """An evaluated prompt contains the answer it is scored against."""


@dataclass
class GenerationConfig(StrictConfig):
    """Decoding settings: config reminder.generation (defaults: config.yaml's)."""

    SECTION = "reminder.generation"

    max_new_tokens: int = 40  # new tokens per response (seeds: 30; the toy BPE spends ~15 on the two tags)
    num_beams: int = 1  # beam search width (seeds: 5)
    batch_size: int = 40  # prompts per generate() call
    load_in_4bit: bool = False  # load the base VLM in 4-bit (bitsandbytes)
    dtype: str = "auto"  # CUDA compute dtype: auto (bfloat16 from compute capability 8.0, else float16) or a name
    backend: str = "auto"  # auto (an adapter's training backend; else unsloth on CUDA when installed) | hf | unsloth

    def __post_init__(self):
        super().__post_init__()
        if self.backend not in ("auto", "hf", "unsloth"):
            from mmemory.config import ConfigError

            raise ConfigError(f"config {self.SECTION}: backend {self.backend!r} is not one of auto, hf, unsloth")


PAIR_WINDOW = 3  # words allowed between a question and its answer for the two to count as paired ("A:", "answer is")


def _words(text: str) -> list[str]:
    """Lower-cased words of `text` after `fold` (tags, also broken ones, removed): the form every part is compared in,
    so case, whitespace, punctuation and markup ("Q:", "?", "-", JSON quotes, chat tags) never hide a pair."""
    import re

    from mmemory.reminder.response import fold

    return re.findall(r"[^\W_]+", fold(text).lower())


def _prompt_segments(prompt: str, conversation_at: int, conversation: str) -> list[tuple[str, str]]:
    """(part, text) pieces of a rendered prompt, in order: "instruction" (system text, few-shot examples, chat
    template), "memory" (one per entry of the `<memories>` block before the conversation), "conversation" (one per
    line) and "generation prompt" (everything after the conversation)."""
    from mmemory.reminder.prompts import MEMORY_CLOSE, MEMORY_OPEN

    head, tail = prompt[:conversation_at], prompt[conversation_at + len(conversation):]
    out: list[tuple[str, str]] = []
    mo = head.rfind(MEMORY_OPEN)
    mc = head.find(MEMORY_CLOSE, mo) if mo >= 0 else -1
    if mc >= 0:
        out.append(("instruction", head[:mo]))
        out += [("memory", line) for line in head[mo + len(MEMORY_OPEN):mc].splitlines() if line.strip()]
        out.append(("instruction", head[mc + len(MEMORY_CLOSE):]))
    else:
        out.append(("instruction", head))
    out += [("conversation", line) for line in conversation.splitlines()]
    out.append(("generation prompt", tail))
    return out


def _memory_entry_text(line: str) -> str:
    """A memory-block line `[i] text (image: name)` without its number and image name (`prompts.memory_block`)."""
    import re

    return re.sub(r"\s*\(image: [^()]*\)\s*$", "", re.sub(r"^\s*\[\d+\]\s*", "", line))


def check_no_leak(samples: Sequence[Sample], prompts: Sequence[str],
                  memories: dict[int, Sequence[dict]] | None = None, window: int = PAIR_WINDOW) -> None:
    """Raise LeakError unless every rendered prompt (a) holds the shared conversation, which has exactly round-1
    answers and ends with the evaluated question; (b) says nothing after the conversation (the generation prompt)
    that mentions the target answer; and (c) nowhere pairs the evaluated question with its answer.

    (c) looks at every part: the instruction and system text (with the few-shot examples and the chat template), each
    entry of the `<memories>` block, the conversation and the generation prompt. Every part is compared as words
    (`_words`: `fold`, lower case, punctuation dropped), and a pair is the question's words followed, within `window`
    words, by the answer's words, so any format is caught: "Q: q\nA: a", "q a" (a memory entry,
    `mmemory.memory.context.round_memory_text`), "q? - a", "question: q, answer: a", JSON.

    What is NOT a leak:
    - the same answer to a different question (earlier rounds answering "no" to other questions);
    - the evaluated question at the end of the conversation with nothing after it;
    - an earlier round of the same dialogue that asked the same question and got that answer: it is part of the
      conversation the prompt must show, known before the evaluated round. When an earlier round repeats the
      evaluated round word for word, the pair is known anyway, so it is also tolerated in the memory block (a memory
      of that earlier round reads the same). The memory stage's `leaks()` makes the same exception;
    - a memory entry that another dialogue's round wrote with the same question and answer (toy questions repeat
      across images: "is anything orange? no"). Text alone cannot tell it from the dialogue's own held-out round, so
      it is tolerated only with provenance: pass `memories` (image_id -> the memories rendered into that prompt,
      each with `source` "<image_id>:<round>"), and an entry is tolerated when every rendered memory with that text
      comes from another image_id. Without provenance the entry raises.
    The instruction/system text and the generation prompt never get an exception: they are the same for every
    dialogue and must not pair any evaluated question with its answer, even by coincidence."""
    if len(samples) != len(prompts):
        raise ValueError(f"{len(samples)} samples but {len(prompts)} prompts")
    for s, p in zip(samples, prompts):
        at = p.rfind(s.conversation)
        if at < 0:
            raise LeakError(f"image_id {s.image_id}: the prompt does not contain the shared conversation")
        if not s.conversation.endswith(f"Q: {s.question.strip()}"):
            raise LeakError(f"image_id {s.image_id}: the conversation does not end with the evaluated question")
        lines = s.conversation.splitlines()
        n_answers = sum(line.startswith("A: ") for line in lines)
        if n_answers != s.round - 1:
            raise LeakError(f"image_id {s.image_id}: the conversation for round {s.round} holds {n_answers} answers")
        tw, qw = _words(s.target), _words(s.question)
        segments = _prompt_segments(p, at, s.conversation)
        tail_words = _words(segments[-1][1])
        if tw and any(tail_words[i:i + len(tw)] == tw for i in range(len(tail_words) - len(tw) + 1)):
            raise LeakError(f"image_id {s.image_id}: the held-out answer {s.target!r} follows the question "
                            "(generation prompt)")
        if not tw or not qw:
            continue
        # the conversation's earlier rounds that asked the evaluated question (line index of their "Q:" line)
        conv0 = next(i for i, (part, _) in enumerate(segments) if part == "conversation")
        asked = {conv0 + i for i, line in enumerate(lines[:-1])
                 if line.startswith("Q: ") and lines[i + 1].startswith("A: ") and _words(line[3:]) == qw}
        repeated = any(_words(lines[i - conv0 + 1][3:]) == tw for i in asked)
        foreign: set[str] = set()  # memory texts (as words) that only other dialogues' rounds wrote
        if memories is not None:
            by_text: dict[str, set[bool]] = {}
            for m in memories.get(s.image_id) or []:
                src = str(m.get("source") or "").split(":")[0]
                by_text.setdefault(" ".join(_words(str(m.get("text", "")))), set()).add(
                    bool(src) and src != str(s.image_id))
            foreign = {t for t, others in by_text.items() if others == {True}}
        words, seg_of = [], []
        for j, (_, text) in enumerate(segments):
            w = _words(text)
            words += w
            seg_of += [j] * len(w)
        for i in range(len(words) - len(qw) + 1):
            if words[i:i + len(qw)] != qw:
                continue
            end_q = i + len(qw)
            for j in range(end_q, min(end_q + window, len(words) - len(tw)) + 1):
                if words[j:j + len(tw)] != tw:
                    continue
                spanned = sorted(set(seg_of[i:j + len(tw)]))
                for k in spanned:
                    part, text = segments[k]
                    if part == "conversation" and seg_of[i] in asked and set(spanned) <= {seg_of[i], seg_of[i] + 1}:
                        continue  # an earlier round of this dialogue asked the same question
                    if part == "memory" and (repeated or " ".join(_words(_memory_entry_text(text))) in foreign):
                        continue  # the earlier round repeated word for word, or another dialogue's identical round
                    hint = ("; if this memory comes from another dialogue, pass the rendered memories (with their "
                            "`source`) to check_no_leak" if part == "memory" and memories is None else "")
                    where = {"instruction": "instruction/system text", "memory": "memory block"}.get(part, part)
                    raise LeakError(f"image_id {s.image_id}: the {where} pairs the evaluated question "
                                    f"{s.question!r} with its answer {s.target!r}: {text.strip()[:120]!r}{hint}")


def adapter_training(adapter: str | None) -> dict:
    """How an adapter was trained (`finetune.TRAINING_META`: backend, load_in_4bit, base_model), {} if unknown."""
    from mmemory.reminder.finetune import TRAINING_META

    meta = Path(adapter) / TRAINING_META if adapter else None
    return json.loads(meta.read_text()) if meta is not None and meta.is_file() else {}


def choose_predict_backend(requested: str, adapter: str | None) -> str:
    """The loader of the base VLM: `requested` unless "auto"; "auto" is the backend the adapter was trained with
    (its base is then the one it learned on: Unsloth's 4-bit Gemma-3 is not a plain NF4 load of the same id), and
    without an adapter (or with an adapter that does not say) finetune's own choice (`choose_backend`)."""
    from mmemory.reminder.finetune import choose_backend

    if requested != "auto":
        return requested
    return adapter_training(adapter).get("backend") or choose_backend("auto")


def load_vlm(model_path: str, adapter: str | None = None, load_in_4bit: bool = False, device: str | None = None,
             dtype: str = "auto", backend: str = "hf"):
    """(model, processor) loaded by path; with `adapter`, the PEFT adapter is applied on top (and merged unless the
    base is 4-bit). `backend` "unsloth" loads the base as finetune_vlm's unsloth backend did (FastVisionModel,
    CUDA only); "hf" with transformers (4-bit NF4 through bitsandbytes when `load_in_4bit`)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mmemory.precision import resolve_dtype, torch_dtype

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if adapter and not (Path(adapter) / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter}: no adapter_config.json; run the finetune_vlm rule first")
    trained = adapter_training(adapter)
    if adapter and trained.get("load_in_4bit") is not None and bool(trained["load_in_4bit"]) != load_in_4bit:
        logger.warning("adapter %s was trained on a %s base but reminder.generation.load_in_4bit is %s: the adapter "
                       "is applied to a base it was not trained on", adapter,
                       "4-bit" if trained["load_in_4bit"] else "16/32-bit", load_in_4bit)
    if backend == "unsloth":
        return _load_vlm_unsloth(model_path, adapter, load_in_4bit)
    if backend != "hf":
        raise ValueError(f"reminder.generation.backend {backend!r}: use auto, hf or unsloth")
    kwargs = {}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype(resolve_dtype(dtype, device, what="reminder.generation.dtype")))
    elif torch.device(device).type == "cuda":  # half precision on the GPU; the CPU keeps the checkpoint's dtype
        kwargs["dtype"] = torch_dtype(resolve_dtype(dtype, device, what="reminder.generation.dtype"))
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


def _load_vlm_unsloth(model_path: str, adapter: str | None, load_in_4bit: bool):
    """The base as finetune_unsloth loads it (`FastVisionModel.from_pretrained` with the same 4-bit switch), the
    adapter on top, in Unsloth's inference mode."""
    import torch

    if not torch.cuda.is_available():
        from mmemory.io import InputError

        raise InputError("reminder.generation.backend unsloth (or an adapter trained with unsloth) needs a CUDA GPU "
                         "and the unsloth env (envs/unsloth.yaml). Fix: predict on a GPU node, or set "
                         "reminder.generation.backend: hf to apply the adapter to a plain transformers base")
    from unsloth import FastVisionModel

    from mmemory.hub import check_model

    check_model(model_path, "models.vlm")
    model, processor = FastVisionModel.from_pretrained(model_path, load_in_4bit=load_in_4bit)
    if adapter:
        from peft import PeftModel
        from transformers import AutoProcessor

        model = PeftModel.from_pretrained(model, adapter)
        processor = AutoProcessor.from_pretrained(adapter)  # the processor saved with the adapter
    FastVisionModel.for_inference(model)
    return model.eval(), processor


def render_prompts(processor, samples: Sequence[Sample], variant: str, book: PromptBook | None,
                   memories: dict[int, list[dict]] | None = None, top_k: int | None = None,
                   finetuned_instruction: bool = True) -> list[str]:
    """The exact prompt text each sample is generated from (chat template applied, generation prompt added)."""
    out = []
    for s in samples:
        mems = None
        if variant in MEMORY_VARIANTS:
            mems = (memories or {}).get(s.image_id)
            if mems is None:
                raise KeyError(f"memory context has no entry for image_id {s.image_id}; the memory stage must "
                               "write one list (possibly empty) per dialogue of the split")
            mems = mems[:top_k] if top_k else mems
        messages = build_prompt(s, variant, book, memories=mems, with_image=bool(s.image_path),
                                finetuned_instruction=finetuned_instruction)
        out.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return out


def predict_reminder(samples: Sequence[Sample], variant: str, model_path: str, out_json: str | Path,
                     raw_jsonl: str | Path, progress_dir: str | Path, fp, book: PromptBook | None,
                     gen: GenerationConfig, adapter: str | None = None,
                     memories: dict[int, list[dict]] | None = None, memory_top_k: int | None = None,
                     finetuned_instruction: bool = True) -> dict:
    """Generate (resumably) for every sample, then write the seed-format JSON and the raw JSONL atomically."""
    import torch
    from PIL import Image

    backend = choose_predict_backend(gen.backend, adapter)
    logger.info("variant %s: base %s loaded with the %s backend%s", variant, model_path, backend,
                f" and adapter {adapter}" if adapter else "")
    model, processor = load_vlm(model_path, adapter, gen.load_in_4bit, dtype=gen.dtype, backend=backend)
    prompts = render_prompts(processor, samples, variant, book, memories, memory_top_k, finetuned_instruction)
    check_no_leak(samples, prompts, memories)
    progress = Progress(Path(progress_dir) / "generations.jsonl", fp, f"predict_reminder {variant}")
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
    progress.finish()  # a rerun (output missing or forced) generates again
    return {"variant": variant, "n": len(rows), "generated_now": len(todo),
            "seconds": round(elapsed, 1), "adapter": adapter}
