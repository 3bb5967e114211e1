"""Conversations and prompts for the <reminder> stage, built only from what is known before the evaluated round.

A *sample* is one (dialogue, round t) pair. Its conversation is rounds 1..t-1 as `Q:`/`A:` lines followed by the
question of round t (`Q: ...`); the answer of round t is held out as the sample's `target`. Every variant's prompt
is built from the same conversation, so the variants differ only in their instruction (and, for
`finetuned_memory`, a delimited block of retrieved memories placed before the conversation):

    base              user: [image, conversation]
    prompt            system: instruction + few-shot examples;  user: [image, conversation]
    finetuned         system: instruction, when the adapter was trained with it (reminder.finetune.with_instruction);
                      user: [image, conversation]
    finetuned_caption as finetuned, with a `<memories>` block that holds only the dialogue's own picture (its
                      caption), exactly as a retrieved picture reads in finetuned_memory: the control that tells the
                      memory's contribution apart from the caption's
    finetuned_memory  as finetuned, with `<memories>...</memories>` (retrieved) before the conversation in the user text
    oracle_memory     as finetuned_memory, with the needed earlier picture put first in the block (the ceiling; for a
                      question about the current picture it is finetuned_memory's block)
    wrong_memory      as finetuned_memory, with the block retrieved for another user's dialogue (the negative control)
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mmemory.config import StrictConfig
from mmemory.visdial import VisDialSplit

VARIANTS = ("base", "prompt", "finetuned", "finetuned_caption", "finetuned_memory", "oracle_memory", "wrong_memory")
MEMORY_VARIANTS = ("finetuned_memory", "oracle_memory", "wrong_memory")  # prompted with a block of memories
MEMORY_OPEN, MEMORY_CLOSE = "<memories>", "</memories>"


class PromptError(ValueError):
    """A prompt resource or memory file that cannot be used as it is."""


@dataclass
class ReminderConfig(StrictConfig):
    """config reminder (its scalar keys; prompts, teacher, finetune, toy_vlm, generation and evaluation are their own
    sections). Defaults: config.yaml's; activate and variants are read by the workflow (rules/reminder.smk)."""

    SECTION = "reminder"

    activate: bool = True  # run the reminder stages
    include_caption: bool = False  # put the VisDial caption above the Q:/A: lines (the seeds did not)
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))  # the table's rows: every variant
    memory_top_k: int | None = 3  # retrieved memories shown to the memory variants (None: memory.reminder.k)


@dataclass
class PromptsConfig(StrictConfig):
    """config reminder.prompts: the instruction and few-shot examples (defaults: config.yaml's)."""

    SECTION = "reminder.prompts"

    instruction: str = "resources/prompts/reminder_system.txt"  # the <reminder> instruction
    fewshot: str | None = "resources/prompts/reminder_fewshot.json"  # few-shot examples after it (None: none)
    max_fewshot: int | None = 1  # use at most this many examples (None: all); the tiny VLM reads 1,024 tokens


@dataclass(frozen=True)
class Sample:
    """One evaluated or generated item: the conversation up to the question of `round` (1-based)."""

    image_id: int
    round: int
    conversation: str  # Q:/A: lines of rounds 1..round-1, then "Q: <question of round>"
    question: str
    target: str  # the held-out answer of `round`; never part of any prompt
    image_path: str | None = None
    caption: str = ""
    asks_about: int | None = None  # toy users: the earlier picture the question asks about (None: the current one)

    @property
    def key(self) -> str:
        return f"{self.image_id}:{self.round}"


def build_conversation(questions: Sequence[str], answers: Sequence[str], caption: str | None = None) -> str:
    """`Q:`/`A:` lines for every answered round, then the final question (len(questions) == len(answers) + 1)."""
    if len(questions) != len(answers) + 1:
        raise ValueError(f"need one more question than answers, got {len(questions)} and {len(answers)}")
    lines = [f"Caption: {caption}"] if caption else []
    for q, a in zip(questions, answers):
        lines += [f"Q: {q.strip()}", f"A: {a.strip()}"]
    lines.append(f"Q: {questions[-1].strip()}")
    return "\n".join(lines)


def make_sample(split: VisDialSplit, dialog: dict, rnd: int,
                include_caption: bool = ReminderConfig.include_caption) -> Sample:
    """The sample for round `rnd` (1-based) of `dialog`: the answer of that round is held out."""
    rounds = dialog["dialog"]
    if not 1 <= rnd <= len(rounds):
        raise ValueError(f"{split.path}: image_id {dialog['image_id']}: round {rnd} is outside 1..{len(rounds)}")
    if any("answer" not in r for r in rounds[: rnd - 1]):
        raise ValueError(f"{split.path}: image_id {dialog['image_id']}: an earlier round has no answer; "
                         "the conversation cannot be built (VisDial test files hold no answers)")
    if "answer" not in rounds[rnd - 1]:
        raise ValueError(f"{split.path}: image_id {dialog['image_id']}: round {rnd} has no answer to hold out")
    qs = [split.question(r) for r in rounds[:rnd]]
    ans = [split.answer(r) for r in rounds[: rnd - 1]]
    caption = dialog.get("caption", "")
    conv = build_conversation(qs, ans, caption if include_caption else None)
    memory = dialog.get("memory") if rnd == len(rounds) else None
    return Sample(dialog["image_id"], rnd, conv, qs[-1], split.answer(rounds[rnd - 1]),
                  dialog.get("image_path"), caption, memory.get("asks_about") if isinstance(memory, dict) else None)


def last_round_samples(split: VisDialSplit, include_caption: bool = ReminderConfig.include_caption) -> list[Sample]:
    """The evaluation samples: the LAST round of each dialogue (the seeds' contract for the reference answer)."""
    return [make_sample(split, d, len(d["dialog"]), include_caption) for d in split.dialogs]


def training_samples(split: VisDialSplit, rounds_per_dialog: int | None, seed: int = 0, *, include_last: bool,
                     include_caption: bool = ReminderConfig.include_caption) -> list[Sample]:
    """Teacher inputs: `rounds_per_dialog` rounds per dialogue (null: every round), chosen with `seed`.
    With `include_last`, the last round (the seeds' choice) is always among them (config
    reminder.teacher.rounds_per_dialog and include_last_round)."""
    rng = random.Random(f"reminder-rounds-{seed}")
    out = []
    for d in split.dialogs:
        n = len(d["dialog"])
        if rounds_per_dialog is None or rounds_per_dialog >= n:
            chosen = list(range(1, n + 1))
        else:
            pool = list(range(1, n)) if include_last else list(range(1, n + 1))
            k = rounds_per_dialog - 1 if include_last else rounds_per_dialog
            chosen = sorted(rng.sample(pool, k)) + ([n] if include_last else [])
        out += [make_sample(split, d, t, include_caption) for t in chosen]
    return out


@dataclass
class PromptBook:
    """The instruction and few-shot examples (resources/prompts/), loaded once."""

    instruction: str
    fewshot: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, instruction_path: str | Path, fewshot_path: str | Path | None = None,
             max_fewshot: int | None = None) -> "PromptBook":
        instruction_path = Path(instruction_path)
        if not instruction_path.is_file():
            raise PromptError(f"{instruction_path}: instruction file not found; set reminder.prompts.instruction")
        fewshot = []
        if fewshot_path:
            try:
                fewshot = json.loads(Path(fewshot_path).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise PromptError(f"{fewshot_path}: cannot read the few-shot examples ({e}); it must be a JSON "
                                  "list of {conversation, response}") from e
            for i, ex in enumerate(fewshot):
                if not isinstance(ex, dict) or not {"conversation", "response"} <= set(ex):
                    raise PromptError(f"{fewshot_path}: example {i} needs 'conversation' and 'response'")
        if max_fewshot is not None:
            fewshot = fewshot[:max_fewshot]
        return cls(instruction_path.read_text(encoding="utf-8").strip(), fewshot)

    def system_text(self, with_fewshot: bool) -> str:
        """The instruction, followed by the few-shot examples when asked (the teacher and the `prompt` variant)."""
        if not with_fewshot or not self.fewshot:
            return self.instruction
        shots = "\n\n".join(f"[Conversation]\n{ex['conversation']}\n[Answer]\n{ex['response']}" for ex in self.fewshot)
        return f"{self.instruction}\n\nExamples:\n\n{shots}"


def memory_block(memories: Sequence[dict]) -> str:
    """Retrieved memories as a delimited block, best first: `[i] text (image: path) (score: s)` lines."""
    lines = [MEMORY_OPEN]
    for i, m in enumerate(memories, 1):
        line = f"[{i}] {str(m['text']).strip()}"
        if m.get("image"):
            line += f" (image: {Path(str(m['image'])).name})"
        lines.append(line)
    lines.append(MEMORY_CLOSE)
    return "\n".join(lines)


def caption_memories(sample: Sample) -> list[dict]:
    """finetuned_caption's memory block: the dialogue's own picture, written as the memory stage writes a picture."""
    from mmemory.memory.context import image_memory_text

    if not sample.caption:
        raise ValueError(f"variant finetuned_caption needs a caption for image_id {sample.image_id}")
    return [{"text": image_memory_text(sample.caption), "image": sample.image_path}]


def build_prompt(sample: Sample, variant: str, book: PromptBook | None = None,
                 memories: Sequence[dict] | None = None, with_image: bool = True,
                 finetuned_instruction: bool = True) -> list[dict]:
    """Chat messages for one variant. Every variant's user text ends with the same conversation (and so with
    the question of the evaluated round); `memories` (finetuned_memory) go in a block before it, and
    finetuned_caption's block (the own caption, `caption_memories`) goes in the same place.
    `finetuned_instruction`: whether the adapter was trained (and so is prompted) with the instruction."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown reminder variant {variant!r}; choose from {', '.join(VARIANTS)}")
    text = sample.conversation
    if variant == "finetuned_caption":
        if memories:
            raise ValueError("finetuned_caption builds its own memory block (the caption); pass no memories")
        text = memory_block(caption_memories(sample)) + "\n" + text
    elif variant in MEMORY_VARIANTS:
        if memories is None:
            raise ValueError(f"variant {variant} needs memories for image_id {sample.image_id}")
        text = memory_block(memories) + "\n" + text
    elif memories:
        raise ValueError(f"memories are only used by {', '.join(MEMORY_VARIANTS)}, not by {variant}")
    user = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]
    messages = []
    if variant == "prompt" or (variant not in ("base", "prompt") and finetuned_instruction):
        if book is None:
            raise ValueError(f"variant {variant} needs the prompt book (reminder.prompts)")
        messages.append({"role": "system", "content": [{"type": "text",
                                                         "text": book.system_text(variant == "prompt")}]})
    messages.append({"role": "user", "content": user})
    return messages


def teacher_messages(sample: Sample, book: PromptBook) -> list[dict]:
    """The teacher's chat: the instruction + few-shot examples as system, the conversation as user text."""
    return [
        {"role": "system", "content": book.system_text(True)},
        {"role": "user", "content": f"conversation:\n{sample.conversation}"},
    ]


def training_messages(sample: Sample, response: str, book: PromptBook, with_instruction: bool = True,
                      memories: Sequence[dict] | None = None) -> dict:
    """A prompt-completion chat example for SFT, the same for both fine-tuning backends (the image is added by
    the caller): the prompt is exactly what the `finetuned` variant sees at evaluation, or with `memories` what
    `finetuned_memory` sees."""
    variant = "finetuned" if memories is None else "finetuned_memory"
    return {"prompt": build_prompt(sample, variant, book, memories, finetuned_instruction=with_instruction),
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": response}]}]}


def picture_memory(dialog: dict) -> dict:
    """A dialogue's picture as the memory stage remembers it (its caption stands in for the image in text)."""
    from mmemory.memory.context import image_memory_text

    return {"text": image_memory_text(dialog["caption"]), "image": dialog.get("image_path"),
            "source": f"{dialog['image_id']}:0"}


def simulated_memories(split: VisDialSplit, dialog: dict, round_: int, k: int, rng) -> list[dict]:
    """A memory block for a TRAINING sample, in the memory stage's format: the dialogue's picture (its caption) and
    up to k-1 of its rounds before `round_` ("question answer"), in random order. Never the sample's own round, so
    training never shows the answer it asks for. When the sample's question asks about an earlier picture of the
    user (toy users), that picture's memory is always in the block, as retrieval would put it there. It stands in
    for retrieval so that the adapter has seen the block that `finetuned_memory` is prompted with; evaluation uses
    the memory stage's real retrieval."""
    from mmemory.memory.context import round_memory_text

    earlier = [round_memory_text(split.question(r), split.answer(r)) for r in dialog["dialog"][:round_ - 1]]
    picked = [earlier[i] for i in sorted(rng.permutation(len(earlier))[:max(k - 1, 0)])]
    memories = [{"text": t, "image": None} for t in picked]
    if dialog.get("caption"):
        memories.append(picture_memory(dialog))
    memories = [memories[i] for i in rng.permutation(len(memories))][:k]
    about = (dialog.get("memory") or {}).get("asks_about") if round_ == len(dialog["dialog"]) else None
    referred = split.by_image_id().get(about) if about is not None else None
    if referred is not None and k > 0:
        memories = memories[:k - 1]
        memories.insert(int(rng.integers(0, len(memories) + 1)), picture_memory(referred))
    return [{key: v for key, v in m.items() if key != "source"} for m in memories]


def variant_memories(variant: str, split: VisDialSplit, retrieved: dict[int, list[dict]],
                     top_k: int | None) -> dict[int, list[dict]]:
    """The memory block of each dialogue for a memory variant, from the memory stage's retrieved context:
    finetuned_memory its own top_k; oracle_memory the needed earlier picture first, then its own retrieved
    memories (the same count, the same format); wrong_memory the block retrieved for a dialogue of another user
    (half the split away in image-id order, moved on until the user differs)."""
    if variant not in MEMORY_VARIANTS:
        raise ValueError(f"variant {variant} takes no memory block")
    cut = (lambda ms: ms[:top_k]) if top_k else (lambda ms: ms)  # noqa: E731
    missing = [d["image_id"] for d in split.dialogs if d["image_id"] not in retrieved]
    if missing:
        raise KeyError(f"memory context has no entry for image_id {missing[0]} ({len(missing)} in all); the memory "
                       "stage must write one list (possibly empty) per dialogue of the split")
    if variant == "finetuned_memory":
        return {d["image_id"]: cut(retrieved[d["image_id"]]) for d in split.dialogs}
    if variant == "oracle_memory":
        by_id, out = split.by_image_id(), {}
        for d in split.dialogs:
            about = (d.get("memory") or {}).get("asks_about")
            own = cut(retrieved[d["image_id"]])
            if about is None or about not in by_id:
                out[d["image_id"]] = own
                continue
            needed = {**picture_memory(by_id[about]), "score": None}
            rest = [m for m in retrieved[d["image_id"]] if str(m.get("source")) != needed["source"]]
            out[d["image_id"]] = [needed] + rest[:max(len(own) - 1, 0)]
        return out
    dialogs = sorted(split.dialogs, key=lambda d: d["image_id"])
    user = lambda d: (d.get("memory") or {}).get("user")  # noqa: E731
    n, out = len(dialogs), {}
    for i, d in enumerate(dialogs):
        j = (i + n // 2) % n
        for _ in range(n):
            if j != i and (user(d) is None or user(dialogs[j]) != user(d)):
                break
            j = (j + 1) % n
        out[d["image_id"]] = cut(retrieved[dialogs[j]["image_id"]])
    return out


def load_memory_context(path: str | Path) -> dict[int, list[dict]]:
    """Read a memory context (the memory stage writes results/memory/reminder_context_<split>.json):
    {"<image_id>": [{"text", "image", "score", "source"?}, ...]}."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PromptError(f"{path}: cannot read the memory context ({e}); the memory stage writes it") from e
    if not isinstance(raw, dict):
        raise PromptError(f"{path}: must be an object mapping image_id to a list of memories")
    out = {}
    for key, mems in raw.items():
        try:
            image_id = int(key)
        except ValueError:
            raise PromptError(f"{path}: key {key!r} is not an image_id") from None
        if not isinstance(mems, list):
            raise PromptError(f"{path}: image_id {key}: memories must be a list")
        for j, m in enumerate(mems):
            if not isinstance(m, dict) or not isinstance(m.get("text"), str) or "score" not in m:
                raise PromptError(f"{path}: image_id {key}, memory {j}: needs 'text' (str), 'score' and "
                                  "optionally 'image' (str or null)")
        out[image_id] = sorted(mems, key=lambda m: -float(m["score"]))
    return out
