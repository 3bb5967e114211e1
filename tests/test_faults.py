"""Fault injection for the resumable steps: content fingerprints, `--forcerun` reruns, kill-and-resume.

    pytest tests/test_faults.py -q

Each test proves a fault a resumable step survives (checkpoints carry the RNG states): a changed training label
at the same path regenerates the teacher data, and the log says why; a finished training run that is run again
(its outputs missing, or forced) trains from step 0 with a real train_loss; a killed EMR training with dropout
resumes to exactly the weights and metrics of an uninterrupted run; shards with the same keys but other text or
pixels are embedded again. The memory store's faults are in tests/test_memory_faults.py.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from _emr_fixtures import embedded_toy_world
from _kill import kill_on_call
from _reminder_fixtures import PROMPTS, make_reminder_world, shared_world

from mmemory.emr import train as train_mod
from mmemory.emr.data import extract_split, question_key
from mmemory.emr.train import train_emr
from mmemory.encoders import load_encoder
from mmemory.fingerprint import Fingerprint, Run, file_digest, model_digest
from mmemory.io import read_jsonl
from mmemory.shards import ShardedEmbeddings

BRIDGE = dict(embed_dim=32, hidden_size=16, num_query_tokens=2, qformer_hidden_size=16, qformer_layers=1,
              qformer_heads=2, qformer_intermediate_size=32, cross_attention_frequency=1, memory_bank_length=3,
              qformer_initializer_range=0.1, dropout=0.3,
              trainable=["imagebind_fc", "ln_vision", "turn_pe", "query_tokens", "qformer", "llm_proj"])
TRAIN = dict(caption_epochs=0, epochs=2, batch_size=4, lr=1e-3, llm_lr=None, warmup_steps=0, eval_every=2, ckpt_every=2,
             val_dialogs=2, seed=0)  # 6 steps


@pytest.fixture(scope="module")
def emr_world(tmp_path_factory):
    return embedded_toy_world(tmp_path_factory.mktemp("faults_emr"))


def _relabel(path: str, pick) -> None:
    """Correct training labels in place (same path, new content): answer strings of the rounds `pick` chooses."""
    data = json.loads(Path(path).read_text())
    for aid in {r["answer"] for d in data["data"]["dialogs"] for r in pick(d["dialog"])}:
        data["data"]["answers"][aid] += " fixed"
    Path(path).write_text(json.dumps(data))


class _Steps:
    """Counts answer_loss calls (training steps and val-loss batches) and can kill training at call `die_at`."""

    def __init__(self, monkeypatch, die_at: int | None = None):
        self.n, self.die_at, self.real = 0, die_at, train_mod.answer_loss
        monkeypatch.setattr(train_mod, "answer_loss", self)

    def __call__(self, *a, **k):
        self.n += 1
        if self.n == self.die_at:
            raise KeyboardInterrupt("killed")
        return self.real(*a, **k)


def _train(w, out, bridge=BRIDGE, train=TRAIN):
    return train_emr(w["train"], w["val"], w["train_emb"], w["val_emb"], w["llm"], out, bridge, train,
                     llm_trainable=False)


# --- the fingerprint module ---------------------------------------------------------------------------------------

def test_fingerprint_hashes_content_and_names_what_changed(tmp_path):
    f = tmp_path / "train.json"
    f.write_text("a")
    d = file_digest(f)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # touched, same bytes
    assert file_digest(f) == d
    f.write_text("b")  # same size, other bytes
    assert file_digest(f) != d
    m = tmp_path / "model"
    m.mkdir()
    (m / "w.bin").write_bytes(b"\0" * 3_000_000)
    md = model_digest(m)
    (m / "w.bin").write_bytes(b"\0" * 2_999_999 + b"\1")
    assert model_digest(m) != md and model_digest("org/hub-model") == "name:org/hub-model"

    fp = Fingerprint(inputs={"train.json": "x"}, settings={"lr": 1}, models={"llm": "m"})
    old = fp.components()
    assert fp.changes(old) is None
    assert Fingerprint(inputs={"train.json": "y"}, settings={"lr": 1}, models={"llm": "m"}).changes(old) == \
        "inputs changed (train.json)"
    assert Fingerprint(inputs={"train.json": "x"}, settings={"lr": 2}, models={"llm": "n"}).changes(old) == \
        "settings changed (lr); model files changed (llm)"

    run = Run(tmp_path / "run.json", fp, "step")
    cleared = []
    assert run.begin(lambda: cleared.append(1)) is False and run.reason == "no earlier run"
    assert Run(tmp_path / "run.json", fp, "step").begin(lambda: cleared.append(2)) is True  # interrupted: resume
    run.finish()
    again = Run(tmp_path / "run.json", fp, "step")
    assert again.begin(lambda: cleared.append(3)) is False and "previous run finished" in again.reason
    assert cleared == [1, 3]


# --- teacher data -------------------------------------------------------------------------------------------------

def test_changed_label_regenerates_teacher_data(tmp_path, caplog):
    from mmemory.reminder.stage import run_generate

    w = make_reminder_world(tmp_path / "w", 8, 4, with_model=False)
    out = {k: str(tmp_path / "gen" / f"{k}.json") for k in ("data", "rejects", "metrics")}
    cfg = {"backend": "template", "rounds_per_dialog": 1, "max_attempts": 2, "backoff_s": 0}
    run_generate(w["train"], cfg, PROMPTS, out, str(tmp_path / "gen" / "progress"))
    _relabel(w["train"], lambda rounds: rounds[-1:])  # the template teacher answers the last round
    with caplog.at_level(logging.INFO):
        m = run_generate(w["train"], cfg, PROMPTS, out, str(tmp_path / "gen" / "progress"))
    rows = read_jsonl(out["data"])
    assert m["resumed"] == 0 and len(rows) == 8
    assert all(r["response"].endswith(" fixed") for r in rows)  # before: 0 of 8 (the stale progress was reused)
    assert "generate_reminder_data: starting from scratch: inputs changed (train.json)" in caplog.text


def test_changed_val_content_regenerates_an_interrupted_prediction(tmp_path, caplog):
    from transformers import GenerationMixin

    from mmemory.reminder.predict import GenerationConfig
    from mmemory.reminder.stage import run_predict

    w = shared_world()
    val = tmp_path / "val.json"
    val.write_text(Path(w["val"]).read_text())
    out = {k: str(tmp_path / f"{k}.json") for k in ("predictions", "generations", "metrics")}
    gen = GenerationConfig(max_new_tokens=2, num_beams=1, batch_size=2)
    with pytest.MonkeyPatch.context() as mp:
        kill_on_call(mp, GenerationMixin, "generate", 2)  # the first batch lands, then a kill
        with pytest.raises(KeyboardInterrupt):
            run_predict("prompt", str(val), w["vlm"], PROMPTS, gen, out, str(tmp_path / "progress"))
    data = json.loads(val.read_text())
    data["data"]["questions"] = [q + " then" for q in data["data"]["questions"]]  # same path, other questions
    val.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO):
        m = run_predict("prompt", str(val), w["vlm"], PROMPTS, gen, out, str(tmp_path / "progress"))
    assert m["generated_now"] == m["n"] == 4
    assert "inputs changed (val.json)" in caplog.text


# --- forced reruns ------------------------------------------------------------------------------------------------

def test_forced_emr_rerun_trains_again_from_step_0(emr_world, tmp_path, monkeypatch, caplog):
    first = _train(emr_world, tmp_path / "after")
    steps = _Steps(monkeypatch)
    with caplog.at_level(logging.INFO):
        again = _train(emr_world, tmp_path / "after")  # what `--forcerun train_emr` runs
    assert "train_emr after: starting from scratch: the previous run finished" in caplog.text
    # before: 0 training steps ("resuming ... at step 6/6"); now all 6, plus the step-0 and 3 scheduled val losses
    assert again["steps_this_run"] == 6 and again["resumed_from_step"] == 0 and steps.n == 6 + 4
    for k in ("final_train_loss", "mean_train_loss", "final_val_loss"):
        assert again[k] == first[k] and again[k] > 0


def test_forced_finetune_rerun_trains_again_and_resume_keeps_the_whole_run_loss(tmp_path, caplog):
    import transformers
    from PIL import Image

    from mmemory.reminder.finetune import FinetuneConfig, chat_example, finetune_vlm
    from mmemory.reminder.prompts import PromptBook, training_samples
    from mmemory.reminder.teachers import TemplateTeacher
    from mmemory.visdial import load_visdial

    w = shared_world()
    book = PromptBook.load(PROMPTS["instruction"], PROMPTS["fewshot"], 1)
    teacher = TemplateTeacher(quote="turn")
    examples = [chat_example(s, teacher.respond(s), book, Image.open(s.image_path).convert("RGB"), False)
                for s in training_samples(load_visdial(w["train"]), 1, include_last=True)]
    cfg = FinetuneConfig(backend="hf", learning_rate=1e-2, epochs=3, batch_size=4, grad_accum=1, warmup_steps=0,
                         logging_steps=1, optim="adamw_torch")  # 8 examples: 2 steps an epoch, 6 in all
    a = finetune_vlm(examples, w["vlm"], str(tmp_path / "a"), str(tmp_path / "c"), cfg)
    with caplog.at_level(logging.INFO):
        b = finetune_vlm(examples, w["vlm"], str(tmp_path / "a"), str(tmp_path / "c"), cfg)
    assert "finetune_vlm: starting from scratch: the previous run finished" in caplog.text
    # before: resumed at checkpoint-6, trained 0 steps and reported train_loss 0.0
    assert b["resumed_from"] is None and b["steps_this_run"] == 6
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5) and b["train_loss"] > 0

    class Kill(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:  # after the epoch-1 checkpoint (step 2)
                raise KeyboardInterrupt("killed")

    real_init = transformers.Trainer.__init__

    def init(self, *args, **kw):
        real_init(self, *args, **kw)
        self.add_callback(Kill())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transformers.Trainer, "__init__", init)
        with pytest.raises(KeyboardInterrupt):
            finetune_vlm(examples, w["vlm"], str(tmp_path / "a2"), str(tmp_path / "c2"), cfg)
    c = finetune_vlm(examples, w["vlm"], str(tmp_path / "a2"), str(tmp_path / "c2"), cfg)
    assert c["resumed_from"].endswith("checkpoint-2") and c["steps_this_run"] == 4 and c["steps"] == 6
    # the mean over all 6 steps (before: over the 4 after the resume), equal to the uninterrupted run's
    assert c["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)


# --- kill and resume ----------------------------------------------------------------------------------------------

def _run_killed(w, out, monkeypatch, die_at=6):
    """Kill training in step 4 (calls: step-0 val, steps 1-2, val at 2, step 3, killed in step 4; the checkpoint
    is at step 2), then resume; returns the summary."""
    _Steps(monkeypatch, die_at)
    with pytest.raises(KeyboardInterrupt):
        _train(w, out)
    assert torch.load(out / "ckpt" / "last.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(train_mod, "answer_loss", train_mod.answer_loss.real)
    return _train(w, out)


def _same_run(a: Path, b: Path) -> bool:
    return ((a / "bridge.safetensors").read_bytes() == (b / "bridge.safetensors").read_bytes()
            and (a / "loss.csv").read_text() == (b / "loss.csv").read_text())


def test_kill_and_resume_with_dropout_equals_an_uninterrupted_run(emr_world, tmp_path, monkeypatch):
    full = _train(emr_world, tmp_path / "full")
    resumed = _run_killed(emr_world, tmp_path / "killed", monkeypatch)
    assert resumed["resumed_from_step"] == 2 and resumed["steps_this_run"] == 4
    assert _same_run(tmp_path / "full", tmp_path / "killed")  # bit for bit: weights and every loss row
    for k in ("steps", "final_train_loss", "mean_train_loss", "final_val_loss", "first_val_loss"):
        assert resumed[k] == full[k]
    # the control: without restoring the RNG states, the resumed run's dropout masks differ (they diverge)
    monkeypatch.setattr(train_mod, "set_rng_state", lambda state: None)
    _run_killed(emr_world, tmp_path / "no_rng", monkeypatch)
    assert not _same_run(tmp_path / "full", tmp_path / "no_rng")


def test_changed_label_restarts_an_interrupted_emr_training(emr_world, tmp_path, monkeypatch, caplog):
    w = dict(emr_world)
    w["train"] = str(tmp_path / "train.json")
    Path(w["train"]).write_text(Path(emr_world["train"]).read_text())
    _Steps(monkeypatch, die_at=6)
    with pytest.raises(KeyboardInterrupt):
        _train(w, tmp_path / "after")
    _relabel(w["train"], lambda rounds: rounds[:1])
    steps = _Steps(monkeypatch)
    with caplog.at_level(logging.INFO):
        s = _train(w, tmp_path / "after")
    assert "train_emr after: starting from scratch: inputs changed (train.json)" in caplog.text
    assert s["resumed_from_step"] == 0 and s["steps_this_run"] == 6 and steps.n == 6 + 4


# --- shards -------------------------------------------------------------------------------------------------------

def test_same_keys_with_other_text_or_pixels_are_embedded_again(emr_world, tmp_path, caplog):
    from PIL import Image

    enc = load_encoder("clip", emr_world["clip"])
    split = tmp_path / "val.json"
    data = json.loads(Path(emr_world["val"]).read_text())
    image = tmp_path / "img.png"
    Image.open(data["data"]["dialogs"][0]["image_path"]).save(image)
    data["data"]["dialogs"][0]["image_path"] = str(image)
    split.write_text(json.dumps(data))
    out = tmp_path / "emb"
    extract_split(split, out, enc, shard_size=8)
    d0 = data["data"]["dialogs"][0]
    qk, ik = question_key(d0["image_id"], 1), f"image/{d0['image_id']}"
    before = ShardedEmbeddings(out).get_many([qk, ik]).copy()
    (out / "index.json").unlink()  # Snakemake removes the declared output before it reruns the job

    data["data"]["questions"].append("is there anything purple at all?")
    d0["dialog"][0]["question"] = len(data["data"]["questions"]) - 1  # the same key, another text
    split.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO):
        extract_split(split, out, enc, shard_size=8)
    after = ShardedEmbeddings(out).get_many([qk, ik])
    assert "starting from scratch: inputs changed (items)" in caplog.text
    np.testing.assert_allclose(after[0], enc.encode_texts(["is there anything purple at all?"])[0], atol=1e-5)
    assert not np.allclose(after[0], before[0]) and np.allclose(after[1], before[1], atol=1e-6)

    Image.new("RGB", Image.open(image).size, (200, 30, 220)).save(image)  # the same path, other pixels
    extract_split(split, out, enc, shard_size=8)
    np.testing.assert_allclose(ShardedEmbeddings(out).get(ik), enc.encode_images([str(image)])[0], atol=1e-5)
