"""Conversations, variant prompts and the leak test (the seeds' fine-tuned model saw its target answer).

Run: pytest tests/test_reminder_prompts.py
"""
import copy
import json

import pytest
from _reminder_fixtures import PROMPTS, shared_world

from mmemory.reminder.predict import LeakError, check_no_leak, render_prompts
from mmemory.reminder.prompts import (MEMORY_VARIANTS, VARIANTS, PromptBook, build_conversation, build_prompt, last_round_samples,
                                      load_memory_context, make_sample, memory_block, training_samples)
from mmemory.visdial import VisDialSplit, load_visdial


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_world()


@pytest.fixture(scope="module")
def processor(world):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(world["vlm"])


@pytest.fixture(scope="module")
def book():
    return PromptBook.load(PROMPTS["instruction"], PROMPTS["fewshot"], PROMPTS["max_fewshot"])


def sentinel_split(world) -> VisDialSplit:
    """The val split with every answer replaced by a unique sentinel, so any leak is a plain substring."""
    split = load_visdial(world["val"])
    answers = []
    for d in split.dialogs:
        for r, rnd in enumerate(d["dialog"], 1):
            rnd["answer"] = len(answers)
            answers.append(f"sentinel{d['image_id']}x{r}")
            rnd.pop("answer_options", None)
            rnd.pop("gt_index", None)
    split.answers = answers
    return split


def fake_memories(split):
    return {d["image_id"]: [{"text": "the previous picture showed a red circle", "image": d["image_path"],
                             "score": 0.9}] for d in split.dialogs}


def test_conversation_holds_out_the_answer():
    conv = build_conversation(["is it red?", "how many?"], ["yes"])
    assert conv == "Q: is it red?\nA: yes\nQ: how many?"
    with pytest.raises(ValueError):
        build_conversation(["a?"], ["x"])


def test_training_samples_rounds(world):
    split = load_visdial(world["train"])
    samples = training_samples(split, 3, seed=1, include_last=True)
    assert len(samples) == 3 * len(split.dialogs)
    assert all(s.round == 10 for s in samples[2::3])  # the last round is always chosen
    assert samples == training_samples(split, 3, seed=1, include_last=True)  # deterministic
    every = training_samples(split, None, include_last=True)
    assert len(every) == 10 * len(split.dialogs) and every[0].conversation.count("A: ") == 0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("instructed", [True, False])
def test_no_evaluated_prompt_contains_its_target(world, processor, book, variant, instructed):
    split = sentinel_split(world)
    samples = last_round_samples(split)
    prompts = render_prompts(processor, samples, variant, book, fake_memories(split), 3, instructed)
    for s, p in zip(samples, prompts):
        assert s.target == f"sentinel{s.image_id}x10"
        assert s.target not in p
        # ...while every earlier answer of the dialogue is there: the builder really reads the answers.
        assert all(f"A: sentinel{s.image_id}x{r}\n" in p for r in range(1, 10))
        assert p.rstrip().endswith("model") and f"Q: {s.question}" in p
    check_no_leak(samples, prompts)


def test_prompts_do_not_depend_on_the_held_out_answer(world, processor, book):
    split = load_visdial(world["val"])
    changed = copy.deepcopy(split)
    for d in changed.dialogs:
        d["dialog"][-1]["answer"] = (d["dialog"][-1]["answer"] + 1) % len(changed.answers)
    for variant in VARIANTS:
        a = render_prompts(processor, last_round_samples(split), variant, book, fake_memories(split), 3)
        b = render_prompts(processor, last_round_samples(changed), variant, book, fake_memories(split), 3)
        assert a == b


def test_variants_share_the_conversation(world, book):
    split = load_visdial(world["val"])
    s = last_round_samples(split)[0]
    users = {v: build_prompt(s, v, book, memories=[{"text": "m", "image": None, "score": 1.0}]
                             if v in MEMORY_VARIANTS else None)[-1]["content"] for v in VARIANTS}
    texts = {v: u[-1]["text"] for v, u in users.items()}
    assert texts["base"] == texts["prompt"] == texts["finetuned"] == s.conversation
    for v in MEMORY_VARIANTS:  # the same block in the same place: the variants differ only in what it holds
        assert texts[v].endswith("\n" + s.conversation)
        assert texts[v].startswith("<memories>\n[1] m\n</memories>")
    assert all(u[0] == {"type": "image"} for u in users.values())
    assert len(build_prompt(s, "base", book)) == 1  # no instruction
    assert "Examples:" in build_prompt(s, "prompt", book)[0]["content"][0]["text"]
    assert "Examples:" not in build_prompt(s, "finetuned", book)[0]["content"][0]["text"]
    assert len(build_prompt(s, "finetuned", book, finetuned_instruction=False)) == 1


def test_leak_checker_catches_the_seeds_mistake(world, processor, book):
    split = load_visdial(world["val"])
    samples = last_round_samples(split)
    prompts = render_prompts(processor, samples, "finetuned", book)
    check_no_leak(samples, prompts)
    # the seeds' fine-tuned prompt carried the reference response after the question
    leaky = [p + f"<reminder>recall</reminder>\n{s.target}" for s, p in zip(samples, prompts)]
    with pytest.raises(LeakError):
        check_no_leak(samples, leaky)
    # a conversation that kept the last round's answer
    s = samples[0]
    bad = type(s)(s.image_id, s.round, s.conversation + f"\nA: {s.target}", s.question, s.target)
    with pytest.raises(LeakError):
        check_no_leak([bad], [bad.conversation])
    # an instruction or memory block that pairs the evaluated question with its answer
    with pytest.raises(LeakError):
        check_no_leak([s], [f"Q: {s.question}\nA: {s.target}\n" + prompts[0]])


def test_training_prompt_is_the_finetuned_prompt(world, processor, book):
    """TRL renders the SFT prompt exactly as predict_reminder renders the finetuned variant's prompt."""
    from PIL import Image
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    from mmemory.reminder.finetune import chat_example, to_prompt_completion

    split = load_visdial(world["val"])
    for instructed in (True, False):
        s = last_round_samples(split)[1]
        ex = to_prompt_completion(chat_example(s, "<reminder>r</reminder>\nx", book,
                                               Image.open(s.image_path), instructed))
        ex["prompt"] = prepare_multimodal_messages(ex["prompt"], images=ex["images"])
        ex["completion"] = prepare_multimodal_messages(ex["completion"])
        rendered = apply_chat_template({"prompt": ex["prompt"], "completion": ex["completion"]}, processor)
        assert rendered["prompt"] == render_prompts(processor, [s], "finetuned", book,
                                                    finetuned_instruction=instructed)[0]
        assert rendered["completion"].startswith("<reminder>r</reminder>\nx")


def test_memory_context_file(tmp_path):
    p = tmp_path / "ctx.json"
    p.write_text(json.dumps({"7": [{"text": "a", "image": None, "score": 0.1},
                                   {"text": "b", "image": "x/img_7.png", "score": 0.9, "source": "7:0"}]}))
    mems = load_memory_context(p)
    assert [m["text"] for m in mems[7]] == ["b", "a"]  # best first
    assert memory_block(mems[7]) == "<memories>\n[1] b (image: img_7.png)\n[2] a\n</memories>"
    p.write_text(json.dumps({"7": [{"image": None}]}))
    with pytest.raises(ValueError, match="image_id 7, memory 0"):
        load_memory_context(p)


def test_make_sample_rejects_unanswered_rounds(world):
    split = load_visdial(world["val"])
    d = copy.deepcopy(split.dialogs[0])
    del d["dialog"][3]["answer"]
    with pytest.raises(ValueError, match="earlier round has no answer"):
        make_sample(split, d, 10)
    with pytest.raises(ValueError, match="outside"):
        make_sample(split, d, 11)


def test_simulated_training_memories_never_hold_the_sample_round(world, book):
    """Training memory blocks: the picture's caption and earlier rounds only, at most k, in the memory stage's
    format; the held-out answer of the sample's round never appears, and the prompt is finetuned_memory's."""
    import numpy as np

    from mmemory.memory.context import image_memory_text
    from mmemory.reminder.prompts import simulated_memories, training_messages

    split = sentinel_split(world)
    rng = np.random.default_rng(0)
    for d in split.dialogs:
        for rnd in (1, 4, len(d["dialog"])):
            mems = simulated_memories(split, d, rnd, 3, rng)
            texts = [m["text"] for m in mems]
            assert 1 <= len(mems) <= 3 and image_memory_text(d["caption"]) in texts
            allowed = {f"sentinel{d['image_id']}x{r}" for r in range(1, rnd)}
            for t in texts:
                assert f"sentinel{d['image_id']}x{rnd}" not in t and not any(
                    f"sentinel{d['image_id']}x{r}" in t for r in range(rnd + 1, len(d["dialog"]) + 1))
            assert sum(any(a in t for a in allowed) for t in texts) == min(2, rnd - 1)
            sample = make_sample(split, d, rnd)
            msgs = training_messages(sample, "<reminder>x</reminder> y", book, memories=mems)
            user = "".join(c.get("text", "") for m in msgs["prompt"] if m["role"] == "user" for c in m["content"])
            assert user == "".join(c.get("text", "") for m in build_prompt(sample, "finetuned_memory", book, mems)
                                   if m["role"] == "user" for c in m["content"])
            assert sample.target not in user


def _poisoned(s, text):
    """A memory entry exactly as the memory stage writes a round ("{question} {answer}")."""
    return [{"text": "the previous picture showed a red circle", "image": None, "score": 0.9},
            {"text": text, "image": None, "score": 0.5}]


def test_leak_guard_catches_a_poisoned_memory_block(world, processor, book):
    """The memory block is part of the prompt too: the evaluated question with its answer in `<memories>` leaks."""
    from mmemory.memory.context import round_memory_text

    split = load_visdial(world["val"])
    samples = last_round_samples(split)
    poisoned = {s.image_id: _poisoned(s, round_memory_text(s.question, s.target)) for s in samples}
    for s in samples:
        prompt = render_prompts(processor, [s], "finetuned_memory", book, poisoned, 3)[0]
        assert "<memories>" in prompt and f"{s.question} {s.target}" in prompt
        with pytest.raises(LeakError, match="memory block"):
            check_no_leak([s], [prompt])
        # provenance naming the dialogue's own last round does not excuse it either
        own = {s.image_id: [dict(m, source=f"{s.image_id}:{s.round}") for m in poisoned[s.image_id]]}
        with pytest.raises(LeakError, match="memory block"):
            check_no_leak([s], [prompt], own)


@pytest.mark.parametrize("fmt", [
    "Q: {q}\nA: {a}", "{q} {a}", "{q} - {a}", "Question: {Q} Answer: {A}.", "{q}\n\n{a}",
    '{{"question": "{q}", "answer": "{a}"}}', "<b>{q}</b> <i>{a}</i>", "{q} the answer is {a}",
])
def test_leak_guard_catches_the_pair_in_the_system_text_in_any_format(world, processor, fmt):
    split = load_visdial(world["val"])
    s = last_round_samples(split)[0]
    pair = fmt.format(q=s.question, a=s.target, Q=s.question.upper(), A=s.target.upper())
    leaky_book = PromptBook(f"Answer briefly.\nFor example: {pair}\nNow the real one.")
    prompt = render_prompts(processor, [s], "prompt", leaky_book)[0]
    with pytest.raises(LeakError, match="instruction/system text"):
        check_no_leak([s], [prompt])
    # the same pair in a few-shot example (the `prompt` variant's system text)
    shots = PromptBook("Answer briefly.", [{"conversation": pair, "response": "<reminder>r</reminder> x"}])
    with pytest.raises(LeakError, match="instruction/system text"):
        check_no_leak([s], render_prompts(processor, [s], "prompt", shots))


def test_leak_guard_catches_the_pair_in_the_generation_prompt(world, processor, book):
    split = load_visdial(world["val"])
    s = last_round_samples(split)[0]
    prompt = render_prompts(processor, [s], "finetuned", book)[0]
    for tail in (f"<reminder>{s.question} -> {s.target}</reminder>", f"{s.target.upper()}."):
        with pytest.raises(LeakError, match="generation prompt"):
            check_no_leak([s], [prompt + tail])


def test_legitimate_prompts_pass_the_leak_guard(world, processor, book):
    """No false alarms: the same answer to other questions (earlier rounds, memories of other rounds), the question
    at the end with nothing after it, and memories of other dialogues' identical rounds when their source is known."""
    from mmemory.memory.context import image_memory_text, round_memory_text

    split = load_visdial(world["val"])
    samples = last_round_samples(split)
    by_id = split.by_image_id()
    mems = {}
    for s in samples:
        d = by_id[s.image_id]
        rounds = [round_memory_text(split.question(r), split.answer(r)) for r in d["dialog"][:-1]]
        mems[s.image_id] = ([{"text": image_memory_text(s.caption), "image": s.image_path, "score": 1.0,
                              "source": f"{s.image_id}:0"},
                             # another answer to the same question, and the same answer to another question
                             {"text": f"{s.question} hard to say", "image": None, "score": 0.8},
                             {"text": f"is the sky green? {s.target}", "image": None, "score": 0.7}]
                            + [{"text": t, "image": None, "score": 0.5, "source": f"{s.image_id}:{i}"}
                               for i, t in enumerate(rounds, 1)])
    for variant in ("base", "prompt", "finetuned", "finetuned_memory"):
        check_no_leak(samples, render_prompts(processor, samples, variant, book, mems, 20))
    # another dialogue's round with the same question and answer: tolerated with its provenance, not without
    s = samples[0]
    other = {s.image_id: [{"text": round_memory_text(s.question, s.target), "image": None, "score": 0.9,
                           "source": f"{samples[1].image_id}:10"}]}
    prompt = render_prompts(processor, [s], "finetuned_memory", book, other, 3)
    check_no_leak([s], prompt, other)
    with pytest.raises(LeakError, match="pass the rendered memories"):
        check_no_leak([s], prompt)
    mixed = {s.image_id: other[s.image_id] + [dict(other[s.image_id][0], source=None)]}
    with pytest.raises(LeakError):  # one copy of that text has no provenance: it could be the held-out round
        check_no_leak([s], render_prompts(processor, [s], "finetuned_memory", book, mixed, 3), mixed)


def test_a_round_repeated_word_for_word_is_not_a_leak(world, processor, book):
    """A dialogue whose last round repeats an earlier round: the pair is in the conversation, known before the
    evaluated round, so it is tolerated there and in the memory block (as the memory stage's `leaks()` does), but
    never in the system text."""
    from mmemory.memory.context import round_memory_text

    split = load_visdial(world["val"])
    d = copy.deepcopy(split.dialogs[0])
    d["dialog"][-1] = dict(d["dialog"][3])
    s = make_sample(split, d, len(d["dialog"]))
    assert f"Q: {s.question}\nA: {s.target}\n" in s.conversation
    mems = {s.image_id: [{"text": round_memory_text(s.question, s.target), "image": None, "score": 0.9}]}
    for variant in ("base", "prompt", "finetuned", "finetuned_memory"):
        check_no_leak([s], render_prompts(processor, [s], variant, book, mems, 3))
    with pytest.raises(LeakError, match="instruction/system text"):
        check_no_leak([s], render_prompts(processor, [s], "finetuned", PromptBook(f"{s.question} {s.target}")))
    with pytest.raises(LeakError, match="generation prompt"):
        check_no_leak([s], [render_prompts(processor, [s], "finetuned", book)[0] + s.target])
