"""predict_reminder on a tiny Gemma-3: seed-format output, resume after a kill, adapters, memories.

Run: pytest tests/test_reminder_predict.py
"""
import json

import pytest
from _kill import kill_on_call
from _reminder_fixtures import PROMPTS, shared_world

from mmemory.io import read_jsonl
from mmemory.reminder.predict import GenerationConfig, predict_reminder
from mmemory.reminder.prompts import PromptBook, last_round_samples
from mmemory.reminder.finetune import TRAINING_META
from mmemory.reminder.stage import run_predict
from mmemory.visdial import load_visdial


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_world()


@pytest.fixture(scope="module")
def adapter(world, tmp_path_factory):
    """An untrained LoRA adapter (B = 0, so it leaves the model unchanged) saved like finetune_vlm saves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mmemory.reminder.finetune import FinetuneConfig, lora_target_regex

    out = tmp_path_factory.mktemp("adapter")
    model = AutoModelForImageTextToText.from_pretrained(world["vlm"])
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, target_modules=lora_target_regex(FinetuneConfig())))
    peft.save_pretrained(out)
    AutoProcessor.from_pretrained(world["vlm"]).save_pretrained(out)
    (out / TRAINING_META).write_text(json.dumps({"with_instruction": False}))
    return str(out)


GEN = GenerationConfig(max_new_tokens=4, num_beams=1, batch_size=2)


def test_seed_format_output_and_resume(world, tmp_path):
    book = PromptBook.load(PROMPTS["instruction"], PROMPTS["fewshot"], 1)
    samples = last_round_samples(load_visdial(world["val"]))
    args = (tmp_path / "P.json", tmp_path / "raw.jsonl", tmp_path / "progress", "fp")
    from transformers import GenerationMixin

    with pytest.MonkeyPatch.context() as mp:
        kill_on_call(mp, GenerationMixin, "generate", 2)  # GEN.batch_size 2: the first batch of two lands, then a kill
        with pytest.raises(KeyboardInterrupt):
            predict_reminder(samples, "prompt", world["vlm"], *args, book, GEN)
    assert len(read_jsonl(tmp_path / "progress" / "generations.jsonl")) == 2
    second = predict_reminder(samples, "prompt", world["vlm"], *args, book, GEN)
    assert second["generated_now"] == 2 and second["n"] == 4  # the two finished samples were not redone
    third = predict_reminder(samples, "prompt", world["vlm"], *args, book, GEN)
    assert third["generated_now"] == 4  # a finished run's progress does not satisfy a rerun (output missing/forced)
    preds = json.loads((tmp_path / "P.json").read_text())
    assert [set(p) for p in preds] == [{"image_id", "conversation", "response"}] * 4
    assert [p["image_id"] for p in preds] == [s.image_id for s in samples]
    assert [p["conversation"] for p in preds] == [s.conversation for s in samples]
    raw = read_jsonl(tmp_path / "raw.jsonl")
    assert all(r["variant"] == "prompt" and r["prompt"].endswith("<start_of_turn>model\n") for r in raw)
    assert all(s.target not in r["prompt"].split(s.question)[-1] for s, r in zip(samples, raw))


def test_finetuned_and_memory_variants_through_the_stage(world, adapter, tmp_path):
    ctx = tmp_path / "reminder_context.json"
    split = load_visdial(world["val"])
    ctx.write_text(json.dumps({str(d["image_id"]): [{"text": f"memory of {d['image_id']}", "image": None,
                                                     "score": 0.5}] for d in split.dialogs}))
    gen = GenerationConfig(max_new_tokens=4, num_beams=1, batch_size=3)
    outs = {}
    for variant in ("base", "finetuned", "finetuned_memory"):
        out = {k: str(tmp_path / variant / f"{k}.json") for k in ("predictions", "generations", "metrics")}
        run_predict(variant, world["val"], world["vlm"], PROMPTS, gen, out, str(tmp_path / variant / "progress"),
                    adapter=None if variant == "base" else adapter,
                    memories_path=str(ctx) if variant == "finetuned_memory" else None, memory_top_k=1)
        outs[variant] = read_jsonl(out["generations"])
    for b, f, m in zip(outs["base"], outs["finetuned"], outs["finetuned_memory"]):
        assert b["prompt"] == f["prompt"]  # adapter trained without the instruction: the same prompt as base
        assert b["response"] == f["response"]  # an untrained adapter (B = 0) changes nothing
        assert f"<memories>\n[1] memory of {m['image_id']}\n</memories>\n" in m["prompt"]
        assert m["prompt"].endswith(b["prompt"].split("<start_of_image>")[-1].split("<end_of_image>")[-1])


def test_memory_variant_needs_an_entry_per_dialogue(world, adapter, tmp_path):
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps({}))
    out = {k: str(tmp_path / f"{k}.json") for k in ("predictions", "generations", "metrics")}
    with pytest.raises(KeyError, match="no entry for image_id"):
        run_predict("finetuned_memory", world["val"], world["vlm"], PROMPTS,
                    GenerationConfig(max_new_tokens=2, num_beams=1, batch_size=2), out, str(tmp_path / "p"), adapter=adapter, memories_path=str(ctx))


def test_missing_adapter_is_a_clear_error(world, tmp_path):
    from mmemory.reminder.predict import load_vlm

    with pytest.raises(FileNotFoundError, match="run the finetune_vlm rule"):
        load_vlm(world["vlm"], adapter=str(tmp_path))
