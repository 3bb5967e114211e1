"""Offline means offline: importing mmemory turns hub telemetry off and the hub offline unless the
environment says otherwise, so the usage report TRL's trainers send (two DNS lookups of huggingface.co) never
leaves; the network guard that the end-to-end test (tests/test_workflow.py) puts around the whole DAG catches such a
lookup; a model that cannot be found is one clear error.

    pytest tests/test_offline.py -q
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmemory.hub import ModelNotFoundError, check_model, looks_like_hub_id

REPO = Path(__file__).resolve().parents[1]
NETGUARD = REPO / "tests" / "netguard"

# what TRL's trainers do on construction (trl/trainer/base_trainer.py), in a thread, then wait for it
TELEMETRY = ("import time\n{pre}from huggingface_hub.utils import send_telemetry\n"
             "send_telemetry('trl/SFTTrainer', library_name='trl', library_version='1')\ntime.sleep(2)\n")


def _run_guarded(tmp_path: Path, code: str, **env_extra: str) -> tuple[subprocess.CompletedProcess, str]:
    log = tmp_path / "netguard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(NETGUARD), str(REPO)]), MMEMORY_NETGUARD_LOG=str(log),
               HF_HOME=str(tmp_path / "hf"), **env_extra)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                       cwd=tmp_path)
    assert (tmp_path / "netguard.log.loaded").exists(), "the guard did not load"
    return r, log.read_text() if log.exists() else ""


def test_the_guard_records_telemetry_without_mmemory(tmp_path):
    """The control: with no HF_HUB_* setting, the hub library reaches for huggingface.co, and the guard sees it."""
    r, log = _run_guarded(tmp_path, TELEMETRY.format(pre=""))
    assert r.returncode == 0, r.stderr
    assert "huggingface.co" in log


def test_importing_mmemory_keeps_telemetry_at_home(tmp_path):
    r, log = _run_guarded(tmp_path, TELEMETRY.format(pre="import mmemory\n"))
    assert r.returncode == 0, r.stderr
    assert log == ""


def test_the_environment_still_wins(tmp_path):
    code = ("import os, mmemory\nfrom huggingface_hub import constants\n"
            "print(os.environ['HF_HUB_OFFLINE'], constants.is_offline_mode(), constants.HF_HUB_DISABLE_TELEMETRY)")
    r, _ = _run_guarded(tmp_path, code)
    assert r.stdout.split() == ["1", "True", "True"]
    r, _ = _run_guarded(tmp_path, code, HF_HUB_OFFLINE="0")  # a user who wants downloads says so
    assert r.stdout.split() == ["0", "False", "True"]


def test_check_model_names_the_setting_and_the_fix(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        check_model(model, "counting.model")
    (model / "config.json").write_text("{}")
    assert check_model(model, "counting.model") == str(model)
    with pytest.raises(ModelNotFoundError, match="counting.model .*weights.bin: a file"):
        (tmp_path / "weights.bin").write_bytes(b"0")
        check_model(tmp_path / "weights.bin", "counting.model")
    with pytest.raises(ModelNotFoundError, match="results/models/x: no such model directory"):
        check_model("results/models/x", "coref model")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE=1.*hf download org/model"):
        check_model("org/model", "coref model")
    assert looks_like_hub_id("meta-llama/Llama-3.2-1B") and not looks_like_hub_id("./m")
    assert not looks_like_hub_id("results/models/coref/tiny-s")
