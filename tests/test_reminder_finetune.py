"""finetune_vlm: LoRA targets, the shared chat data, the hf backend on a tiny Gemma-3, and the unsloth backend's
calls checked against a fake `unsloth` module (Unsloth itself needs a CUDA GPU, which CI does not have).

Run: pytest tests/test_reminder_finetune.py
"""
import re
import sys
import types

import pytest
from _reminder_fixtures import PROMPTS, shared_world

from mmemory.reminder.finetune import (FinetuneConfig, chat_example, choose_backend, finetune_vlm, lora_target_regex,
                                       to_prompt_completion)
from mmemory.reminder.prompts import PromptBook, training_samples
from mmemory.reminder.teachers import TemplateTeacher
from mmemory.training import latest_checkpoint
from mmemory.visdial import load_visdial


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_world()


@pytest.fixture(scope="module")
def examples(world):
    from PIL import Image

    book = PromptBook.load(PROMPTS["instruction"], PROMPTS["fewshot"], 1)
    split = load_visdial(world["train"])
    teacher = TemplateTeacher(quote="turn")
    return [chat_example(s, teacher.respond(s), book, Image.open(s.image_path).convert("RGB"), False)
            for s in training_samples(split, 1, include_last=True)]


def test_lora_targets_follow_the_switches():
    rx = re.compile(lora_target_regex(FinetuneConfig()))
    names = ["model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj",
             "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1",
             "model.language_model.layers.1.self_attn.o_proj", "model.language_model.layers.1.mlp.down_proj",
             "model.multi_modal_projector.mm_input_projection", "lm_head"]
    assert [bool(rx.match(n)) for n in names] == [True, True, True, True, False, False]
    lang_attn = re.compile(lora_target_regex(FinetuneConfig(finetune_vision_layers=False, finetune_mlp_modules=False)))
    assert [bool(lang_attn.match(n)) for n in names] == [False, False, True, False, False, False]
    with pytest.raises(ValueError):
        lora_target_regex(FinetuneConfig(finetune_vision_layers=False, finetune_language_layers=False))


def test_chat_example_shape(examples):
    ex = examples[0]
    roles = [m["role"] for m in ex["messages"]]
    assert roles == ["user", "assistant"]  # with_instruction=False: no system message
    user = ex["messages"][0]["content"]
    assert user[0]["type"] == "image" and user[0]["image"] is not None and user[1]["text"].startswith("Q: ")
    pc = to_prompt_completion(ex)
    assert len(pc["images"]) == 1 and pc["prompt"][0]["content"] == user[1]["text"]
    assert pc["completion"][0]["content"].startswith("<reminder>")


def test_backend_choice(monkeypatch):
    import torch

    assert choose_backend("hf") == "hf"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_backend("auto") == "hf"
    with pytest.raises(ValueError):
        choose_backend("vllm")


def test_hf_backend_trains_an_adapter_and_resumes(world, examples, tmp_path):
    import torch

    torch.manual_seed(0)
    cfg = FinetuneConfig(backend="hf", learning_rate=1e-2, epochs=2, batch_size=4, grad_accum=1, warmup_steps=0,
                         logging_steps=1, optim="adamw_torch")
    out, ckpt = tmp_path / "adapter", tmp_path / "ckpt"
    stats = finetune_vlm(examples, world["vlm"], str(out), str(ckpt), cfg)
    assert stats["backend"] == "hf" and stats["steps"] == 4 and stats["resumed_from"] is None
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert (out / "processor_config.json").exists() or (out / "preprocessor_config.json").exists()
    import json

    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 16 and adapter_cfg["lora_alpha"] == 16 and adapter_cfg["lora_dropout"] == 0.0
    assert "vision_tower" in adapter_cfg["target_modules"] and "language_model" in adapter_cfg["target_modules"]
    assert latest_checkpoint(ckpt) is not None
    assert list(ckpt.glob("runs/*/events.out.tfevents.*"))  # TensorBoard (report_to)
    # a finished run's checkpoints never satisfy a rerun (its adapter missing, or forced): it trains again from step 0
    again = finetune_vlm(examples, world["vlm"], str(out), str(ckpt), cfg)
    assert again["resumed_from"] is None and again["steps_this_run"] == 4 and again["train_loss"] > 0
    assert again["train_loss"] == pytest.approx(stats["train_loss"], rel=1e-4)  # the same seeded run
    # nor do checkpoints made from other teacher data or settings (resume after a kill: tests/test_faults.py)
    fresh = finetune_vlm(examples[:4], world["vlm"], str(out), str(ckpt), cfg, fp="data-v2")
    assert fresh["resumed_from"] is None and fresh["steps"] == 2


def _fake_unsloth(monkeypatch, tmp_path):
    """Fake `unsloth` and `unsloth.trainer` modules that record how the backend calls them."""
    calls = []

    class FastVisionModel:
        @staticmethod
        def from_pretrained(name, **kw):
            calls.append(("from_pretrained", name, kw))
            model = types.SimpleNamespace(parameters=lambda: iter([]))
            processor = types.SimpleNamespace(tokenizer="TOK",
                                              save_pretrained=lambda d: calls.append(("save_processor", d)))
            return model, processor

        @staticmethod
        def get_peft_model(model, **kw):
            calls.append(("get_peft_model", kw))
            return model

        @staticmethod
        def for_training(model):
            calls.append(("for_training",))

    class UnslothVisionDataCollator:
        def __init__(self, model, processor, **kw):
            calls.append(("collator", kw))

    class FakeTrainer:
        def __init__(self, **kw):
            calls.append(("trainer", kw))
            self.state = types.SimpleNamespace(global_step=3, log_history=[{"loss": 2.0}, {"loss": 1.0}])

        def train(self, resume_from_checkpoint=None):
            calls.append(("train", resume_from_checkpoint))
            return types.SimpleNamespace(training_loss=1.5)

        def save_model(self, out):
            calls.append(("save_model", out))

    unsloth = types.ModuleType("unsloth")
    unsloth.FastVisionModel = FastVisionModel
    trainer_mod = types.ModuleType("unsloth.trainer")
    trainer_mod.UnslothVisionDataCollator = UnslothVisionDataCollator
    monkeypatch.setitem(sys.modules, "unsloth", unsloth)
    monkeypatch.setitem(sys.modules, "unsloth.trainer", trainer_mod)
    import torch
    import trl
    from trl import SFTConfig, SFTTrainer  # noqa: F401  (import before CUDA is faked)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(trl, "SFTTrainer", FakeTrainer)
    # TrainingArguments sets up a CUDA device in __post_init__, which the faked CUDA cannot do: record the
    # keyword arguments instead (test_unsloth_sft_config_is_valid builds the real SFTConfig from them).
    monkeypatch.setattr(trl, "SFTConfig", lambda **kw: types.SimpleNamespace(**kw))
    return calls


def test_unsloth_backend_calls_match_the_seeds_recipe(monkeypatch, tmp_path, examples):
    calls = _fake_unsloth(monkeypatch, tmp_path)
    cfg = FinetuneConfig(backend="auto", load_in_4bit=True, learning_rate=1e-5, epochs=3, batch_size=2,
                         grad_accum=4, optim="adamw_8bit", seed=3407)  # the seeds' random_state
    stats = finetune_vlm(examples, "unsloth/gemma-3-4b-it", str(tmp_path / "a"), str(tmp_path / "c"), cfg)
    assert stats["backend"] == "unsloth"  # auto picks unsloth when CUDA and the package are present
    by = {c[0]: c for c in calls}
    assert by["from_pretrained"] == ("from_pretrained", "unsloth/gemma-3-4b-it",
                                     {"load_in_4bit": True, "use_gradient_checkpointing": "unsloth"})
    peft = by["get_peft_model"][1]
    assert peft == {"finetune_vision_layers": True, "finetune_language_layers": True,
                    "finetune_attention_modules": True, "finetune_mlp_modules": True, "r": 16, "lora_alpha": 16,
                    "lora_dropout": 0.0, "bias": "none", "random_state": 3407, "use_rslora": False,
                    "loftq_config": None}
    assert by["collator"][1]["train_on_responses_only"] is True
    kw = by["trainer"][1]
    assert kw["train_dataset"] is examples  # the same chat messages (with images) as the hf backend
    args = kw["args"]
    assert (args.learning_rate, args.per_device_train_batch_size, args.gradient_accumulation_steps,
            args.num_train_epochs, args.optim) == (1e-5, 2, 4, 3, "adamw_8bit")
    assert args.remove_unused_columns is False and args.dataset_kwargs == {"skip_prepare_dataset": True}
    assert ("save_model", str(tmp_path / "a")) in calls and ("save_processor", str(tmp_path / "a")) in calls


def test_unsloth_sft_config_is_valid(tmp_path):
    """The arguments the unsloth backend passes are accepted by the real trl.SFTConfig."""
    from mmemory.reminder.finetune import _sft_config

    args = _sft_config(FinetuneConfig(optim="adamw_torch", epochs=3), str(tmp_path), dataset_text_field="",
                       dataset_kwargs={"skip_prepare_dataset": True})
    assert args.dataset_kwargs == {"skip_prepare_dataset": True} and args.num_train_epochs == 3


def test_unsloth_backend_refuses_without_cuda(monkeypatch, tmp_path, examples):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        finetune_vlm(examples, "m", str(tmp_path / "a"), str(tmp_path / "c"), FinetuneConfig(backend="unsloth"))
