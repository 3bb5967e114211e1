"""The finetuned_caption control: finetuned with the dialogue's own caption in the memory block, where and how
finetuned_memory's retrieved picture would read, so that the memory's own contribution is visible.

Run: pytest tests/test_reminder_caption_control.py
"""
import pytest
from _reminder_fixtures import PROMPTS, shared_world

from mmemory.memory.context import image_memory_text
from mmemory.reminder.prompts import (MEMORY_OPEN, PromptBook, build_prompt, caption_memories, last_round_samples,
                                      memory_block)
from mmemory.visdial import load_visdial


@pytest.fixture(scope="module")
def samples():
    return last_round_samples(load_visdial(shared_world()["val"]))


def _user_text(messages):
    return next(c["text"] for m in messages if m["role"] == "user" for c in m["content"] if c["type"] == "text")


def test_caption_block_is_the_memory_block_of_the_own_picture(samples):
    book = PromptBook.load(PROMPTS["instruction"])
    for s in samples:
        text = _user_text(build_prompt(s, "finetuned_caption", book))
        block = memory_block([{"text": image_memory_text(s.caption), "image": s.image_path}])
        assert text == block + "\n" + s.conversation  # the same place as finetuned_memory's block
        assert s.caption in text and text.count(MEMORY_OPEN) == 1
        # the only difference from finetuned_memory with that one memory retrieved is nothing at all
        same = build_prompt(s, "finetuned_memory", book, memories=caption_memories(s))
        assert build_prompt(s, "finetuned_caption", book) == same
        # and from finetuned, only the block
        assert _user_text(build_prompt(s, "finetuned", book)) == s.conversation


def test_caption_control_refuses_memories_and_needs_a_caption(samples):
    s = samples[0]
    with pytest.raises(ValueError, match="pass no memories"):
        build_prompt(s, "finetuned_caption", PromptBook.load(PROMPTS["instruction"]), memories=[{"text": "x"}])
    from dataclasses import replace

    with pytest.raises(ValueError, match="needs a caption"):
        caption_memories(replace(s, caption=""))
