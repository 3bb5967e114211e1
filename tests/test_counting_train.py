"""The counting stage's model, training and prediction on a tiny LLaVA, offline: the model builds and reloads by path
like llava-hf/llava-1.5-7b-hf; TRL's own collator puts the loss on the answer only; a short run writes the adapter
and TensorBoard events; the 4-bit NF4 path on the CPU (bitsandbytes); resume after a kill; push_to_hub offline; one
prediction per frame.

Run: pytest tests/test_counting_train.py
"""
import json
from dataclasses import replace

import pytest

from mmemory.counting.model import (IMAGE_TOKEN, QUESTION, CountingToySize, answer_text, build_tiny_llava,
                                    user_message)
from mmemory.counting.predict import CountingGenerationConfig, predict_counts
from mmemory.counting.train import (PAPER_TRAIN, CountingTrainConfig, finetune_counting, make_trainer,
                                    training_rows)

SMALL = CountingToySize(hidden_size=32, num_layers=1, num_heads=2, vision_hidden_size=32, vision_layers=1,
                        vision_heads=2, image_size=32, patch_size=8)  # 16 image tokens
FAST = CountingTrainConfig(epochs=2, batch_size=4, warmup_steps=0, logging_steps=1, learning_rate=3e-3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mmemory.counting.toy import make_toy_counting

    root = tmp_path_factory.mktemp("counting")
    rows = make_toy_counting(root / "toy", n=12, seed=0, image_size=(48, 36))
    items = [{"id": str(i), "count": c, "image": str(root / "toy" / "frames" / f"seq_{i:06d}.jpg")} for i, c in rows]
    build_tiny_llava(root / "llava", SMALL, seed=0)
    return {"root": root, "model": str(root / "llava"), "train": items[:8], "val": items[8:10], "test": items[10:]}


def test_tiny_llava_loads_by_path_like_llava_hf(world):
    import torch
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration, LlavaProcessor

    processor = AutoProcessor.from_pretrained(world["model"])
    model = LlavaForConditionalGeneration.from_pretrained(world["model"])
    assert isinstance(processor, LlavaProcessor) and processor.image_token == IMAGE_TOKEN
    tok = processor.tokenizer
    assert all(len(tok.tokenize(" " + str(n))) == 1 for n in range(101))  # every count is one token
    prompt = processor.apply_chat_template([user_message()], add_generation_prompt=True, tokenize=False)
    assert prompt == f"<bos>USER: <image>\n{QUESTION} ASSISTANT:"
    batch = processor(text=[prompt], images=[[Image.open(world["train"][0]["image"])]], return_tensors="pt",
                      add_special_tokens=False)
    n_image = (SMALL.image_size // SMALL.patch_size) ** 2
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == n_image
    assert batch["pixel_values"].shape[-2:] == (SMALL.image_size, SMALL.image_size)  # squashed, not cropped
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape


def test_trl_collator_puts_the_loss_on_the_answer_only(world, tmp_path):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    trainer, processor = make_trainer(world["model"], world["train"], world["val"], tmp_path / "ckpt", FAST)
    collator = trainer.data_collator
    assert isinstance(collator, DataCollatorForVisionLanguageModeling)  # TRL's own, built from the processor
    batch = collator(training_rows(world["train"][:3]))
    tok = processor.tokenizer
    for ids, labels, mask, item in zip(batch["input_ids"], batch["labels"], batch["attention_mask"],
                                       world["train"][:3]):
        kept = labels != -100
        assert tok.decode(ids[kept]) == " " + answer_text(item["count"]) + tok.eos_token  # the answer and </s>
        assert not kept[ids == trainer.model.config.image_token_id].any()  # image tokens never carry a label
        assert (labels[kept] == ids[kept]).all() and not kept[mask == 0].any()
        first = int(kept.nonzero()[0])
        assert tok.decode(ids[:first][mask[:first] == 1]).endswith(f"{QUESTION} ASSISTANT:")  # prompt: all -100


def test_short_run_writes_adapter_tensorboard_and_metrics(world, tmp_path):
    stats = finetune_counting(world["model"], world["train"], world["val"], tmp_path / "adapter", tmp_path / "ckpt",
                              tmp_path / "tb", FAST, tmp_path / "train_metrics.json")
    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert json.loads((adapter / "counting_train_config.json").read_text())["epochs"] == 2
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert "vision_tower" in cfg["target_modules"] and "language_model" in cfg["target_modules"]
    assert set(cfg["modules_to_save"]) >= {"multi_modal_projector", "lm_head"}
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))  # TensorBoard event files
    assert stats["steps"] == 4 and len(stats["val_loss_by_epoch"]) == 2 and stats["chosen_epoch"] in (1.0, 2.0)
    assert json.loads((tmp_path / "train_metrics.json").read_text())["steps"] == 4
    assert not (tmp_path / "adapter.tmp").exists()
    rows = predict_counts(world["model"], str(adapter), world["test"], CountingGenerationConfig(batch_size=2),
                          tmp_path / "pred.json")
    written = json.loads((tmp_path / "pred.json").read_text())
    assert rows == written and [r["id"] for r in written] == [it["id"] for it in world["test"]]
    assert all(set(r) >= {"id", "count_true", "answer"} and isinstance(r["answer"], str) for r in written)
    before = predict_counts(world["model"], None, world["test"], CountingGenerationConfig(max_new_tokens=3))
    assert len(before) == len(world["test"])


def test_4bit_path_on_cpu(world, tmp_path):
    """The paper's QLoRA path (NF4, double quantisation, prepare_model_for_kbit_training) on the tiny LLaVA: the
    widths are multiples of 32, which bitsandbytes' CPU 4-bit kernel needs."""
    bnb = pytest.importorskip("bitsandbytes")
    from mmemory.counting.model import load_counting_model

    path = tmp_path / "llava64"
    build_tiny_llava(path, replace(SMALL, hidden_size=64, vision_hidden_size=64), seed=0)
    model, _ = load_counting_model(str(path), load_in_4bit=True, device="cpu")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    cfg = replace(FAST, epochs=1, batch_size=4, load_in_4bit=True, select_on_val=False)
    stats = finetune_counting(str(path), world["train"][:4], [], tmp_path / "adapter", tmp_path / "ckpt",
                              tmp_path / "tb", cfg)
    assert stats["steps"] == 1 and stats["load_in_4bit"] and stats["train_loss"] > 0
    rows = predict_counts(str(path), str(tmp_path / "adapter"), world["test"],
                          CountingGenerationConfig(max_new_tokens=3, load_in_4bit=True))
    assert len(rows) == len(world["test"])


def test_resume_after_a_kill_and_start_over_on_a_change(world, tmp_path):
    import transformers

    cfg = replace(FAST, epochs=3)  # 8 frames, batch 4: 2 steps an epoch, a checkpoint at steps 2, 4, 6

    class Kill(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:  # after the epoch-2 checkpoint (step 4)
                raise KeyboardInterrupt("killed")

    real_init = transformers.Trainer.__init__

    def init(self, *args, **kw):
        real_init(self, *args, **kw)
        self.add_callback(Kill())

    run = lambda c: finetune_counting(world["model"], world["train"], world["val"], tmp_path / "a",  # noqa: E731
                                      tmp_path / "c", tmp_path / "tb", c)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transformers.Trainer, "__init__", init)
        with pytest.raises(KeyboardInterrupt):
            run(cfg)
    assert not (tmp_path / "a").exists()  # no adapter from a killed run
    resumed = run(cfg)
    assert resumed["resumed_from"].endswith("checkpoint-4") and resumed["steps_this_run"] == 2
    assert resumed["steps"] == 6 and resumed["train_loss"] > 0
    again = run(cfg)  # a finished run: a rerun (forced, or its adapter missing) trains from step 0
    assert again["resumed_from"] is None and again["steps_this_run"] == 6
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transformers.Trainer, "__init__", init)
        with pytest.raises(KeyboardInterrupt):
            run(cfg)
    changed = run(replace(cfg, learning_rate=1e-3))  # another setting: the killed run's checkpoints are cleared
    assert changed["resumed_from"] is None and changed["steps_this_run"] == 6


def test_push_to_hub_offline_fails_before_training(world, tmp_path, monkeypatch):
    import socket

    import mmemory.counting.train as train

    monkeypatch.setattr(train, "make_trainer", lambda *a, **k: pytest.fail("training started"))
    cfg = replace(FAST, push_to_hub=True, hub_model_id="someone/tiny-counting")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="offline"):
        finetune_counting(world["model"], world["train"], world["val"], tmp_path / "a", tmp_path / "c",
                          tmp_path / "tb", cfg)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)

    def no_network(*a, **k):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(RuntimeError, match="cannot be reached"):
        finetune_counting(world["model"], world["train"], world["val"], tmp_path / "a", tmp_path / "c",
                          tmp_path / "tb", cfg)
    with pytest.raises(ValueError, match="hub_model_id"):
        train.check_hub_reachable(replace(cfg, hub_model_id=None))


def test_paper_preset_holds_the_seeds_values():
    import yaml

    paper = yaml.safe_load(PAPER_TRAIN)["counting"]
    cfg = CountingTrainConfig.from_dict(paper["train"])
    assert (cfg.learning_rate, cfg.batch_size, cfg.epochs, cfg.grad_accum) == (1.4e-5, 8, 1, 1)
    assert cfg.load_in_4bit and cfg.gradient_checkpointing and cfg.max_length is None and not cfg.push_to_hub
    assert CountingGenerationConfig.from_dict(paper["generation"]).load_in_4bit
