"""Coref training (`mmemory.coref.train`): labels on the target only, a one-process run, a two-process CPU run
(gloo) on disjoint shards, resume after a kill, and the CLI's strict config.

    .venv/bin/python -m pytest -q tests/test_coref_train.py

Offline: toy dialogues and a tiny Llama (hidden 32, one layer, a 300-token BPE) built once for the module.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mmemory.coref.data import dump_coref, load_coref
from mmemory.coref.models import CorefToySize, build_toy_coref_models
from mmemory.coref.prompts import format_prompt, format_target
from mmemory.coref.toy import make_toy_dialogues
from mmemory.coref.train import IGNORE, CorefTrainConfig, encode_example, train_coref

REPO = Path(__file__).resolve().parents[1]
# 16 train dialogues, batch 8: 2 steps an epoch (one process), a checkpoint each epoch
FAST = CorefTrainConfig(epochs=3, batch_size=8, warmup_steps=1, logging_steps=1, learning_rate=3e-3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("coref_train")
    items = make_toy_dialogues(24, 0)
    (d / "train.json").write_text(dump_coref(items[:16]), encoding="utf-8")
    (d / "val.json").write_text(dump_coref(items[16:]), encoding="utf-8")
    build_toy_coref_models(d / "train.json", {"tiny": d / "tiny"},
                           {"tiny": CorefToySize(hidden_size=32, num_layers=1, num_heads=2, vocab_size=300)})
    return {"dir": d, "train": str(d / "train.json"), "val": str(d / "val.json"), "model": str(d / "tiny")}


def test_labels_cover_exactly_the_target_and_eos(world):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(world["model"])
    d = load_coref(world["train"])[0][0]
    prompt = tok(format_prompt(d), add_special_tokens=True)["input_ids"]
    text_only = f" {d.answer_choice.text}"
    assert format_target(d) == f" {d.answer}){text_only}" and format_target(d, "text") == text_only
    for target, text in (("option", format_target(d)), ("text", text_only), ("evidence", format_target(d, "evidence")),
                         ("label", f" {d.answer}")):  # label last: `answer` below is its encoding
        answer = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ex = encode_example(tok, d, 1024, target)  # the 300-token BPE spends ~500 tokens on the prompt
        assert ex["input_ids"] == prompt + answer and not ex["truncated"]
        assert ex["labels"] == [IGNORE] * len(prompt) + answer
    # too long: the prompt loses tokens from the left, the target stays whole
    short = encode_example(tok, d, len(answer) + 10, "label")
    assert len(short["input_ids"]) == len(answer) + 10 and short["truncated"]
    assert short["input_ids"] == prompt[-10:] + answer and short["labels"][10:] == answer


def test_keeping_the_answer_logits_gives_the_full_loss_and_gradients(world):
    """The collator pads on the left and asks for the logits of the answers' positions only: the loss and every
    gradient equal those of a right-padded batch with logits at every position."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmemory.coref.train import PadCollator, takes_logits_to_keep

    tok = AutoTokenizer.from_pretrained(world["model"])
    model = AutoModelForCausalLM.from_pretrained(world["model"], dtype=torch.float32)
    assert takes_logits_to_keep(model)
    rows = [encode_example(tok, d, 1024, t) for d, t in zip(load_coref(world["train"])[0][:4],
                                                             ("evidence", "label", "text", "option"))]
    assert len({len(r["input_ids"]) for r in rows}) > 1  # the batch needs padding
    kept = PadCollator(tok.pad_token_id, keep_logits=True)(rows)
    answers = [sum(x != IGNORE for x in r["labels"]) for r in rows]
    assert kept["logits_to_keep"] == max(answers) + 1 and kept["labels"].shape[1] == max(answers) + 1
    assert int((kept["labels"] != IGNORE).sum()) == sum(answers)  # no answer token is cut

    right = {"input_ids": [], "labels": [], "attention_mask": []}
    n = max(len(r["input_ids"]) for r in rows)
    for r in rows:  # the same batch padded on the right, every logit kept
        pad = n - len(r["input_ids"])
        right["input_ids"].append(r["input_ids"] + [tok.pad_token_id] * pad)
        right["labels"].append(r["labels"] + [IGNORE] * pad)
        right["attention_mask"].append([1] * len(r["input_ids"]) + [0] * pad)
    right = {k: torch.tensor(v) for k, v in right.items()}

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    loss_kept, grads_kept = loss_and_grads(kept)
    loss_full, grads_full = loss_and_grads(right)
    assert loss_kept == pytest.approx(loss_full, rel=1e-5)
    for a, b in zip(grads_kept, grads_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_truncation_keeps_bos():
    class CharTokenizer:  # one id per character; BOS 1, EOS 2
        bos_token_id, eos_token_id = 1, 2

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": ([1] if add_special_tokens else []) + [3 + ord(c) % 50 for c in text]}

    d = load_coref_from_items(make_toy_dialogues(1, 3))[0]
    ex = encode_example(CharTokenizer(), d, 20, "label")  # " D" + EOS: 3 tokens
    assert len(ex["input_ids"]) == 20 and ex["input_ids"][0] == 1 and ex["labels"][-3:] == ex["input_ids"][-3:]
    assert ex["labels"][:17] == [IGNORE] * 17
    with pytest.raises(ValueError, match="max_length"):
        encode_example(CharTokenizer(), d, 3, "option")


def load_coref_from_items(items):
    from mmemory.coref.data import validate_dialogues

    return validate_dialogues(items)[0]


def test_one_process_run_writes_a_loadable_model_and_metrics(world, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stats = train_coref(world["model"], world["train"], world["val"], tmp_path / "model", tmp_path / "ckpt", FAST,
                        tmp_path / "train_metrics.json", threads=1)
    metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["world_size"] == 1 and metrics["n_train"] == 16 and metrics["n_val"] == 8
    assert [v["epoch"] for v in metrics["val_loss_by_epoch"]] == [1.0, 2.0, 3.0]
    best = min(metrics["val_loss_by_epoch"], key=lambda v: v["val_loss"])
    assert metrics["chosen_epoch"] == best["epoch"] and metrics["config"]["learning_rate"] == 3e-3
    assert metrics["last_loss"] < metrics["first_loss"] and metrics["train_loss"] > 0
    assert metrics["shards"]["n_seen"] == [16] and metrics["shards"]["covers"] and stats["resumed_from"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "model", "train_metrics.json"]  # no partial dir
    assert list((tmp_path / "ckpt").glob("runs/*/events.out.tfevents.*"))  # TensorBoard (report_to)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert model.config.num_hidden_layers == 1 and tok.eos_token_id is not None
    assert json.loads((tmp_path / "model" / "coref_train_config.json").read_text())["epochs"] == 3


def test_two_process_cpu_run_trains_on_disjoint_shards(world, tmp_path):
    cfg = {"epochs": 1, "batch_size": 4, "warmup_steps": 1, "logging_steps": 1}  # 16 / (2 x 4): 2 steps per rank
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mmemory.coref", "train", "--model", world["model"], "--train", world["train"], "--val", world["val"],
           "--out", str(tmp_path / "model"), "--checkpoints", str(tmp_path / "ckpt"),
           "--metrics", str(tmp_path / "m.json"), "--config", json.dumps(cfg), "--threads", "1",
           "--log-file", str(tmp_path / "train.log")]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["world_size"] == 2 and m["steps"] == 2
    shards = m["shards"]
    assert [r["rank"] for r in shards["per_rank"]] == [0, 1] and shards["n_seen"] == [8, 8]
    a, b = (set(r["indices"]) for r in shards["per_rank"])
    assert not a & b and a | b == set(range(16)) and shards["disjoint"] and shards["covers"]
    # one model dir; the log's copy for this attempt (mmemory.io.attempt_log_path) under attempts/
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempts", "ckpt", "m.json", "model", "train.log"]
    (copy,) = (tmp_path / "attempts").glob("train.*.log")
    assert "train_coref: 2 steps" in copy.read_text()
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert "train_coref: 2 steps" in (tmp_path / "train.log").read_text()


def test_resume_after_a_kill_and_start_over_on_a_change(world, tmp_path):
    import transformers

    class Kill(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:  # after the epoch-2 checkpoint (step 4)
                raise KeyboardInterrupt("killed")

    real_init = transformers.Trainer.__init__

    def init(self, *args, **kw):
        real_init(self, *args, **kw)
        self.add_callback(Kill())

    def run(cfg):
        return train_coref(world["model"], world["train"], world["val"], tmp_path / "model", tmp_path / "ckpt",
                           cfg, tmp_path / "m.json", threads=1)

    def killed(cfg):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(transformers.Trainer, "__init__", init)
            with pytest.raises(KeyboardInterrupt):
                run(cfg)

    killed(FAST)
    assert not (tmp_path / "model").exists() and not (tmp_path / "m.json").exists()  # nothing from a killed run
    resumed = run(FAST)
    assert resumed["resumed_from"].endswith("checkpoint-4") and resumed["steps_this_run"] == 2
    assert resumed["steps"] == 6 and resumed["train_loss"] > 0 and len(resumed["val_loss_by_epoch"]) == 3
    assert resumed["shards"]["epoch"] == 2  # the first epoch this call trained
    again = run(FAST)  # a finished run: a rerun (model missing or forced) trains from step 0
    assert again["resumed_from"] is None and again["steps_this_run"] == 6
    killed(FAST)
    changed = run(replace(FAST, learning_rate=1e-3))  # another setting: the killed run's checkpoints are cleared
    assert changed["resumed_from"] is None and changed["steps_this_run"] == 6


def test_cli_rejects_an_unknown_config_key(world, tmp_path, capsys):
    from mmemory.coref.__main__ import main

    base = ["train", "--model", world["model"], "--train", world["train"], "--out", str(tmp_path / "m"),
            "--checkpoints", str(tmp_path / "c")]
    assert main(base + ["--config", '{"learnin_rate": 0.1}']) == 2  # one line on stderr, exit code 2
    err = capsys.readouterr().err
    assert "learnin_rate" in err and "coref.train" in err and "learning_rate" in err
    assert main(base + ["--config", '{"target": "letter"}']) == 2
    assert "target 'letter'" in capsys.readouterr().err
    assert main(base + ["--config", "{epochs: 3}"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (tmp_path / "c").exists()


def test_paper_preset_is_a_valid_config():
    import yaml

    from mmemory.coref.train import PAPER_TRAIN

    values = yaml.safe_load(PAPER_TRAIN)["coref"]["train"]
    cfg = CorefTrainConfig.from_dict({**values, "deepspeed": str(REPO / values["deepspeed"])})  # any cwd
    assert (cfg.learning_rate, cfg.epochs, cfg.warmup_steps, cfg.weight_decay, cfg.fp16, cfg.batch_size,
            cfg.grad_accum) == (2e-5, 30, 100, 0.01, True, 2, 4)
    ds = json.loads(Path(cfg.deepspeed).read_text())
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
