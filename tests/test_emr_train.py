"""EMR training: `pytest tests/test_emr_train.py` (offline; a tiny toy world built in a temp dir).

Pins the seeds' mistakes: the target is the round's ANSWER (the seeds trained on the question), train/val image ids
are disjoint, and training resumes from its checkpoint after a kill.
"""
from __future__ import annotations

import json

import pytest
import torch

from _emr_fixtures import BRIDGE, TRAIN, embedded_toy_world
from _kill import kill_on_call
from mmemory.emr import train as train_mod
from mmemory.emr.data import dialog_records
from mmemory.emr.lm import TextCodec, assemble
from mmemory.emr.train import check_disjoint, round_batches, train_emr
from mmemory.shards import ShardedEmbeddings
from mmemory.visdial import load_visdial


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return embedded_toy_world(tmp_path_factory.mktemp("emr_world"))


def test_target_is_the_answer_not_the_question(world):
    from transformers import AutoTokenizer

    split = load_visdial(world["train"])
    recs, _ = dialog_records(split, ShardedEmbeddings(world["train_emb"]))
    codec = TextCodec(AutoTokenizer.from_pretrained(world["llm"]))
    toks = round_batches(recs, codec)
    for rec, (prompts, targets) in zip(recs, toks):
        assert [codec.decode(t) for t in targets] == rec.answers
        assert all(t[-1] == codec.tokenizer.eos_token_id for t in targets)
        assert [codec.decode(t) for t in targets] != rec.questions
        # the labels of an assembled training batch are exactly the answer tokens, nothing of the prompt
        from transformers import AutoModelForCausalLM

        llm = AutoModelForCausalLM.from_pretrained(world["llm"])
        batch = assemble(llm, torch.zeros(len(prompts), 2, llm.config.hidden_size), prompts, targets,
                         codec.tokenizer.pad_token_id, left_pad=False, lead=codec.lead_ids())
        for row, t in zip(batch["labels"], targets):
            assert row[row != -100].tolist() == t
        break


def test_records_keep_answers_and_skip_only_quarantined(world):
    split = load_visdial(world["val"])
    recs, skipped = dialog_records(split, ShardedEmbeddings(world["val_emb"]))
    assert skipped == 0 and len(recs) == len(split.dialogs)
    d = split.dialogs[0]
    assert recs[0].answers == [split.answer(r) for r in d["dialog"]]
    assert recs[0].questions == [split.question(r) for r in d["dialog"]]


def test_train_and_val_images_are_disjoint(world):
    tr = [d["image_id"] for d in load_visdial(world["train"]).dialogs]
    va = [d["image_id"] for d in load_visdial(world["val"]).dialogs]
    assert not set(tr) & set(va)
    check_disjoint(tr, va)
    with pytest.raises(ValueError, match="share 1 image ids"):
        check_disjoint(tr, va + tr[:1])
    with pytest.raises(ValueError, match="share"):  # training refuses overlapping splits
        train_emr(world["train"], world["train"], world["train_emb"], world["train_emb"], world["llm"],
                  "/nonexistent", BRIDGE, TRAIN, llm_trainable=False)


def test_train_writes_outputs_and_resumes_after_a_kill(world, tmp_path, monkeypatch):
    out = tmp_path / "after"
    real = train_mod.answer_loss
    kill_on_call(monkeypatch, train_mod, "answer_loss", 4)  # step-0 val, step 1, its val, killed in step 2
    with pytest.raises(KeyboardInterrupt):
        train_emr(world["train"], world["val"], world["train_emb"], world["val_emb"], world["llm"], out, BRIDGE,
                  TRAIN, llm_trainable=False)
    ck = torch.load(out / "ckpt" / "last.pt", weights_only=True)  # tensors and plain containers only
    assert ck["step"] == 1 and ck["config"]["bridge"]["trainable"] == BRIDGE["trainable"]
    assert set(ck["rng"]) >= {"torch", "numpy", "python"}
    assert not (out / "bridge.safetensors").exists()

    steps_run = {"n": 0}

    def counting_loss(*a, **k):
        steps_run["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "answer_loss", counting_loss)
    summary = train_emr(world["train"], world["val"], world["train_emb"], world["val_emb"], world["llm"], out,
                        BRIDGE, TRAIN, llm_trainable=False)
    assert summary["steps"] == 3  # 12 dialogues / batch 4, one epoch
    # resumed at step 1: two training steps + one val loss after each, no step-0 val loss again
    assert steps_run["n"] == 2 + 2
    for f in ("bridge.safetensors", "bridge_config.json", "loss.csv", "loss.png", "train_summary.json"):
        assert (out / f).stat().st_size > 0
    rows = (out / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,split,loss" and sum(",train," in r for r in rows) == 3
    # TensorBoard holds the same losses, each step once although the killed run had logged step 1 before the kill
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    csv_train = [(int(r.split(",")[0]), float(r.split(",")[3])) for r in rows[1:] if ",train," in r]
    assert [e.step for e in events.Scalars("loss/train")] == [step for step, _ in csv_train]
    assert [e.value for e in events.Scalars("loss/train")] == pytest.approx([loss for _, loss in csv_train])
    assert [e.step for e in events.Scalars("loss/val")] == [0, 1, 2, 3]
    cfg = json.loads((out / "bridge_config.json").read_text())
    assert cfg["weights"]["imagebind_fc"]["trainable"] > 0


def test_config_change_restarts_instead_of_resuming(world, tmp_path, caplog, monkeypatch):
    out = tmp_path / "v"
    kill_on_call(monkeypatch, train_mod, "answer_loss", 4)  # the checkpoint is at step 1
    with pytest.raises(KeyboardInterrupt):
        train_emr(world["train"], world["val"], world["train_emb"], world["val_emb"], world["llm"], out, BRIDGE,
                  TRAIN, llm_trainable=False)
    monkeypatch.undo()
    import logging

    with caplog.at_level(logging.WARNING):
        s = train_emr(world["train"], world["val"], world["train_emb"], world["val_emb"], world["llm"], out,
                      BRIDGE, {**TRAIN, "lr": 2e-3}, llm_trainable=False)
    assert "starting from scratch: settings changed (train)" in caplog.text
    assert s["steps"] == 3 and s["resumed_from_step"] == 0 and s["steps_this_run"] == 3


def test_unknown_settings_are_rejected(world, tmp_path):
    with pytest.raises(ValueError, match=r"config emr.bridge: unknown key\(s\)"):
        train_emr(world["train"], world["val"], world["train_emb"], world["val_emb"], world["llm"], tmp_path,
                  {**BRIDGE, "qformer_layer": 2}, TRAIN, llm_trainable=False)
    with pytest.raises(ValueError, match="unknown EMR variant"):
        train_emr(world["train"], world["val"], world["train_emb"], world["val_emb"], world["llm"], tmp_path,
                  BRIDGE, TRAIN, variant="before", llm_trainable=False)
    with pytest.raises(ValueError, match="embed_dim"):
        train_emr(world["train"], world["val"], world["train_emb"], world["val_emb"], world["llm"], tmp_path,
                  {**BRIDGE, "embed_dim": 16}, TRAIN, llm_trainable=False)


def test_caption_pretraining_comes_first_targets_the_caption_and_resumes(world, tmp_path, monkeypatch):
    """caption_epochs: the first steps train soft prompt -> caption with no text prompt (BLIP-2's generative stage),
    then the answer steps follow; a kill in the caption phase resumes there."""
    from transformers import AutoTokenizer

    codec = TextCodec(AutoTokenizer.from_pretrained(world["llm"]))
    split = load_visdial(world["train"])
    captions = {d["caption"] for d in split.dialogs}
    val = load_visdial(world["val"])
    answers = {s.answer(r) for s in (split, val) for d in s.dialogs for r in d["dialog"]}  # val: the val-loss calls
    calls, real = [], train_mod.answer_loss

    def recording_loss(llm, soft, prompts, targets, *a, **k):
        calls.append(([codec.decode(p) for p in prompts], [codec.decode(t) for t in targets], soft.shape[0]))
        if len(calls) == 4:  # step 0 val, caption step 1, its val, then dies in caption step 2
            raise KeyboardInterrupt("killed")
        return real(llm, soft, prompts, targets, *a, **k)

    monkeypatch.setattr(train_mod, "answer_loss", recording_loss)
    out, train = tmp_path / "cap", {**TRAIN, "caption_epochs": 1}
    with pytest.raises(KeyboardInterrupt):
        train_emr(world["train"], world["val"], world["train_emb"], world["val_emb"], world["llm"], out, BRIDGE, train,
                  llm_trainable=False)
    summary = train_emr(world["train"], world["val"], world["train_emb"], world["val_emb"], world["llm"], out,
                        BRIDGE, train, llm_trainable=False)
    assert summary["steps"] == 3 + 3  # one caption epoch, then one answer epoch (12 dialogues / batch 4)
    caption_calls = [c for c in calls if not any(c[0])]
    assert len(caption_calls) == 2 + 2  # steps 1 and 2 (killed), then 2 and 3 again after the resume from step 1
    for prompts, targets, n in caption_calls:
        assert set(targets) <= captions and n == len(targets) <= TRAIN["batch_size"]  # one soft prompt per dialogue
    for prompts, targets, n in calls:
        if any(prompts):
            assert set(targets) <= answers and all(p.startswith("question:") for p in prompts)
            assert not set(targets) & captions
    rows = [r.split(",") for r in (out / "loss.csv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows if r[2] == "caption"] == [1, 2, 3]
    assert [int(r[0]) for r in rows if r[2] == "train"] == [4, 5, 6]


def test_caption_pretraining_needs_captions(world, tmp_path):
    data = json.loads(open(world["train"]).read())
    data["data"]["dialogs"][1]["caption"] = " "
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="1 dialogues .* have none"):
        train_emr(str(bad), world["val"], world["train_emb"], world["val_emb"], world["llm"], tmp_path / "o", BRIDGE,
                  {**TRAIN, "caption_epochs": 1}, llm_trainable=False)
