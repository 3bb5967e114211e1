"""The GPU check command (`python -m mmemory.gpu_check`), on a CPU: it refuses at once, in one line, without CUDA;
--list says what each env would run; and the checks a CPU can hold run their code paths (precision, 4-bit NF4 with
gradient checkpointing). The checks themselves need a GPU: they have not run here.

Run: pytest tests/test_gpu_check.py
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmemory import gpu_check

REPO = Path(__file__).resolve().parents[1]


def test_without_cuda_it_stops_at_once_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "mmemory.gpu_check"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]


def test_list_names_every_check_and_where_a_skipped_one_runs():
    proc = subprocess.run([sys.executable, "-m", "mmemory.gpu_check", "--list"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name in ("precision", "nf4_emr", "counting", "reminder_hf", "unsloth", "ddp", "zero3", "imagebind"):
        assert name in out
    assert "dtype auto here" in out
    for check in gpu_check.CHECKS:  # a check this env cannot run names the env that can
        if gpu_check.missing_modules(check):
            assert f"envs/{check.env}.yaml" in out


def test_unknown_check_is_an_argparse_error():
    with pytest.raises(SystemExit) as e:
        gpu_check.main(["--only", "nf5"])
    assert e.value.code == 2


def test_the_limits_fit_the_ten_minute_budget_and_every_check_has_a_runner():
    assert set(gpu_check.RUNNERS) == set(gpu_check.BY_NAME)
    assert gpu_check.DEFAULT_TIMEOUT_S == 600 and all(c.limit_s <= 300 for c in gpu_check.CHECKS)


def test_precision_selects_fp16_on_a_mocked_turing(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    from mmemory.precision import amp_flags, resolve_dtype

    assert resolve_dtype("auto", "cuda") == "float16" and amp_flags("auto", "cuda")["fp16"]


def test_cpu_smoke_precision_and_nf4_emr(tmp_path):
    """The code of two checks, on the CPU (bitsandbytes runs NF4 there): a failure here is a bug in the check."""
    for name in ("precision", "nf4_emr"):
        res = gpu_check.run_one(name, tmp_path / name, "cpu", 120)
        assert res["status"] == "pass", res
    assert "4-bit layers" in gpu_check.run_one("nf4_emr", tmp_path / "again", "cpu", 120)["detail"]


def test_a_missing_library_skips_with_the_env_to_use(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_check, "missing_modules", lambda check: ["deepspeed"])
    res = gpu_check.run_one("zero3", tmp_path, "cuda", 10)
    assert res == {"status": "skip", "detail": "deepspeed not importable here: run it in envs/coref.yaml"}


def test_the_whole_dag_gpu_overlay_dry_runs_on_a_cpu():
    """config/gpu_check.yaml (the toy DAG through the CUDA paths) validates against the schema and plans every
    stage's model rules."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "results/report.md",
                           "--configfile", "config.yaml", "config/gpu_check.yaml"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for rule in ("train_emr", "finetune_vlm", "finetune_counting", "train_coref", "eval_coref"):
        assert rule in out


def test_the_gpu_check_command_is_the_10_minute_check_and_stops_at_once_without_cuda(tmp_path):
    """`snakemake --cores 4 --configfile config.yaml config/gpu_check.yaml` plans the one gpu_check job; on a machine
    without CUDA the job fails at once and its log says so in one line."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "config.yaml", "config/gpu_check.yaml",
           "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile")]
    dry = subprocess.run(cmd + ["-n"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, (dry.stdout + dry.stderr)[-3000:]
    assert "gpu_check" in dry.stdout and "train_emr" not in dry.stdout
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode != 0 and not (tmp_path / "results/gpu_check/passed.txt").exists()
    log = (tmp_path / "results/logs/gpu_check.log").read_text().strip().splitlines()
    assert len(log) == 1 and "no CUDA device" in log[0]
