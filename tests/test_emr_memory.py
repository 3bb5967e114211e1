"""EMR's memory settings at paper scale (emr.train.gradient_checkpointing, loss_scale; emr.llm_dtype auto), on the
CPU: gradient checkpointing recomputes the LM's and the Q-Former's activations and gives the same losses, loss
scaling is chosen only for a frozen float16 LM on CUDA, and a checkpoint carries the scaler's state.

Run: pytest tests/test_emr_memory.py
"""
from __future__ import annotations

import json

import pytest
import torch

from _emr_fixtures import BRIDGE, TRAIN, embedded_toy_world
from mmemory.config import ConfigError
from mmemory.emr.train import TrainConfig, train_emr, use_loss_scaling


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return embedded_toy_world(tmp_path_factory.mktemp("emr_memory"))


def test_gradient_checkpointing_gives_the_same_losses(world, tmp_path, monkeypatch):
    import transformers.modeling_utils as modeling_utils

    calls = {"n": 0}
    real = torch.utils.checkpoint.checkpoint

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    args = (world["train"], world["val"], world["train_emb"], world["val_emb"], world["llm"])
    plain = train_emr(*args, tmp_path / "plain", BRIDGE, TRAIN, llm_dtype="auto", llm_trainable=False)
    monkeypatch.setattr(modeling_utils, "checkpoint", counting)  # what gradient_checkpointing_enable wraps
    ckpt = train_emr(*args, tmp_path / "ckpt", BRIDGE, {**TRAIN, "gradient_checkpointing": True}, llm_dtype="auto",
                     llm_trainable=False)
    assert calls["n"] > 0  # layers were recomputed (the LM's decoder layers and the Q-Former's)
    assert ckpt["final_train_loss"] == pytest.approx(plain["final_train_loss"], rel=1e-4)
    saved = torch.load(tmp_path / "ckpt" / "ckpt" / "last.pt", weights_only=True)
    assert "scaler" in saved  # the GradScaler's state travels with the checkpoint (empty when scaling is off)
    config = json.loads((tmp_path / "ckpt" / "bridge_config.json").read_text())
    assert config["run_config"]["train"]["gradient_checkpointing"] is True


def test_loss_scaling_only_for_a_frozen_float16_lm_on_cuda():
    assert use_loss_scaling("auto", "float16", "cuda")
    assert not use_loss_scaling("auto", "bfloat16", "cuda")  # bfloat16 has float32's range
    assert not use_loss_scaling("auto", "float16", "cuda", llm_trainable=True)  # float16 weights cannot be unscaled
    assert not use_loss_scaling("auto", "float16", "cpu") and not use_loss_scaling("dynamic", "float16", "cpu")
    assert use_loss_scaling("dynamic", "bfloat16", "cuda") and not use_loss_scaling("none", "float16", "cuda")
    with pytest.raises(ConfigError, match="loss_scale 'on'"):
        TrainConfig.from_dict({**TRAIN, "loss_scale": "on"})
