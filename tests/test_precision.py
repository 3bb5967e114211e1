"""The compute dtype follows the GPU's compute capability (bf16 only from 8.0), and each stage's config overrides it;
CUDA is mocked, so this runs on any CPU.

Run: pytest tests/test_precision.py
"""
import logging

import pytest
import torch

from mmemory.config import ConfigError
from mmemory.precision import amp_flags, native_bf16, resolve_dtype

TURING, VOLTA, AMPERE, HOPPER = (7, 5), (7, 0), (8, 0), (9, 0)


@pytest.fixture
def gpu(monkeypatch):
    """gpu(capability): CUDA 'present' with that compute capability; torch.cuda.is_bf16_supported() says True on
    Turing too, as it does on a real 2080 Ti."""

    def set_capability(cap):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    return set_capability


@pytest.mark.parametrize("cap, want", [(TURING, "float16"), (VOLTA, "float16"), (AMPERE, "bfloat16"),
                                       (HOPPER, "bfloat16")])
def test_auto_picks_bf16_only_from_compute_capability_8(gpu, cap, want):
    gpu(cap)
    assert resolve_dtype("auto", "cuda") == want
    assert native_bf16("cuda") is (want == "bfloat16")
    assert amp_flags("auto", "cuda") == {"bf16": want == "bfloat16", "fp16": want == "float16"}


def test_is_bf16_supported_is_not_what_decides(gpu):
    gpu(TURING)
    assert torch.cuda.is_bf16_supported()  # what the old code asked
    assert resolve_dtype("auto", "cuda") == "float16"


def test_the_config_overrides_auto_and_bf16_on_turing_warns(gpu, caplog):
    gpu(TURING)
    with caplog.at_level(logging.WARNING, logger="mmemory.precision"):
        assert resolve_dtype("bfloat16", "cuda", what="counting.train.dtype") == "bfloat16"
    assert "emulated" in caplog.text and "counting.train.dtype" in caplog.text
    gpu(AMPERE)
    assert resolve_dtype("float16", "cuda") == "float16"
    assert amp_flags("float32", "cuda") == {"bf16": False, "fp16": False}


def test_cpu_keeps_its_own_default(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_dtype("auto") == "float32"
    assert resolve_dtype("auto", "cpu", cpu="bfloat16") == "bfloat16"
    assert amp_flags("auto") == {"bf16": False, "fp16": False}  # the Trainer trains in float32 on the CPU


def test_a_cpu_device_on_a_gpu_machine_is_the_cpu(gpu):
    gpu(AMPERE)
    assert resolve_dtype("auto", "cpu") == "float32"


def test_an_unknown_dtype_names_the_key():
    with pytest.raises(ConfigError, match="emr.llm_dtype.*'half'"):
        resolve_dtype("half", "cpu", what="emr.llm_dtype")


def test_each_stage_takes_its_amp_flags_from_the_capability(gpu, tmp_path):
    """The counting and reminder SFTConfigs and the EMR loss scaling, on a mocked 2080 Ti and a mocked A100."""
    from mmemory.counting.train import CountingTrainConfig
    from mmemory.emr.train import use_loss_scaling
    from mmemory.reminder.finetune import FinetuneConfig

    for cap, bf16 in ((TURING, False), (AMPERE, True)):
        gpu(cap)
        flags = amp_flags(CountingTrainConfig().dtype, "cuda")
        assert flags == {"bf16": bf16, "fp16": not bf16}
        assert amp_flags(FinetuneConfig().dtype, "cuda") == flags
        llm_dtype = resolve_dtype("auto", "cuda")
        assert use_loss_scaling("auto", llm_dtype, "cuda") is (not bf16)
    assert use_loss_scaling("dynamic", "bfloat16", "cuda") and not use_loss_scaling("none", "float16", "cuda")
    assert not use_loss_scaling("dynamic", "float16", "cpu")


def test_the_trainers_get_the_flags(monkeypatch, tmp_path):
    """sft_config / _sft_config pass amp_flags through: checked with amp_flags replaced, on the CPU."""
    import mmemory.precision as precision
    from mmemory.counting.train import CountingTrainConfig, sft_config
    from mmemory.reminder.finetune import FinetuneConfig, _sft_config

    seen = []

    def fake(requested="auto", device=None, what="dtype"):
        seen.append((requested, what))
        return {"bf16": False, "fp16": False}

    monkeypatch.setattr(precision, "amp_flags", fake)
    sft_config(CountingTrainConfig(dtype="float16"), str(tmp_path / "c"), evaluate=False)
    _sft_config(FinetuneConfig(dtype="bfloat16"), str(tmp_path / "r"))
    assert seen == [("float16", "counting.train.dtype"), ("bfloat16", "reminder.finetune.dtype")]
