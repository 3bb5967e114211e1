"""The Snakemake workflow end to end on a tiny config, in a temp copy of the checkout.
Run: pytest tests/test_workflow.py   (the e2e test takes a few minutes on 2 cores; `-m "not e2e"` skips it)"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "config", "rules", "workflow_scripts", "resources", "envs", "profiles")
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
NETGUARD = REPO / "tests" / "netguard"  # a sitecustomize that records and refuses connections to other hosts


def _guarded_env(workdir: Path) -> dict:
    """The environment of every Snakemake run here: the network guard on PYTHONPATH (Snakemake passes it on to each
    job), its log in `workdir`, and no HF_HUB_* / TRANSFORMERS_* settings, so that the package's own offline defaults
    (mmemory.hub) are what keeps the jobs off the network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_", "TRANSFORMERS_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(NETGUARD), env.get("PYTHONPATH")) if p)
    env["MMEMORY_NETGUARD_LOG"] = str(workdir / "netguard.log")
    return env


def _snakemake(workdir: Path, *args: str, timeout: int = 1200, configs: tuple[str, ...] = ()
               ) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, *args, "--cores", "2", "--configfile", "config.yaml", "e2e_tiny.yaml", *configs]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=_guarded_env(workdir))
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in (workdir / "results" / "logs").glob("*.log"))
        pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stderr[-6000:]}\n{logs}")
    return proc


def _planned_rules(proc: subprocess.CompletedProcess) -> set[str]:
    """Rule names in the 'Job stats' table of a dry run."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return set()
    table = text.split("Job stats:", 1)[1]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", table, re.M)} - {"total"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A fresh copy of the workflow (as a new clone would have it) with the tiny overrides."""
    root = tmp_path_factory.mktemp("workflow")
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name)
        elif src.exists():
            shutil.copy(src, root / name)
    shutil.copy(REPO / "tests" / "e2e_tiny.yaml", root / "e2e_tiny.yaml")
    return root


@pytest.mark.e2e
def test_full_dag_then_noop_then_targeted_rebuild(workdir):
    _snakemake(workdir)
    # no job of the default DAG looked up or connected to another host (hub telemetry, a model download, ...), and
    # the guard was loaded by Snakemake and its jobs
    guard = workdir / "netguard.log"
    assert not guard.exists(), guard.read_text()[-3000:]
    assert len((workdir / "netguard.log.loaded").read_text().split()) > 10
    report = (workdir / "results" / "report.md").read_text()
    assert report.startswith("# ") and "## Data" in report and "## Tiny models" in report
    assert (workdir / "results" / "report" / "overview.png").stat().st_size > 1000
    # every registered metrics.json that the run wrote is in the report, and no section is empty
    assert "_(no rows)_" not in report
    # EMR: the no-image baseline is a row, and every trained variant ran its captioning phase first
    emr = json.loads((workdir / "results" / "emr" / "metrics.json").read_text())["tables"]
    assert "question alone (no image)" in [r["variant"] for r in next(iter(emr.values()))]
    assert all(r["caption_steps"] > 0 and r["steps"] > r["caption_steps"] for r in emr["EMR training"])
    # <reminder>: part of the adapter's training examples carried a memory block (reminder.finetune.memory_share)
    ft = json.loads((workdir / "results" / "reminder" / "finetuned" / "s0" / "train_metrics.json").read_text())
    assert 0 < ft["examples_with_memory_block"] < ft["examples"]
    # the tables are on the test split; the memory method was chosen on val before the test numbers
    reminder = json.loads((workdir / "results" / "reminder" / "metrics.json").read_text())
    reminder_table = reminder["tables"]
    assert all("test" in title or "stand-in" in title for title in reminder_table)
    # the positive controls are listed, and the report opens with them (holding or not: tiny settings)
    claims = [c["claim"] for c in reminder["positive_controls"]]
    assert any("finetuned_memory beats finetuned" in c for c in claims) and any("wrong_memory" in c for c in claims)
    assert report.index("## What this run shows") < report.index("## Data")
    # the stand-in VLM was pre-trained before the LoRA, and its own scores are in the table
    assert (workdir / "results" / "reminder" / "toy_vlm_metrics.json").exists()
    memory = json.loads((workdir / "results" / "memory" / "minilm" / "metrics.json").read_text())
    assert memory["chosen_on_val"]["method"] == memory["chosen_method"]
    assert all("test" in title for title in memory["tables"])
    for name in ("train", "val", "test"):
        assert (workdir / "results" / "data" / f"{name}.json").exists()
    # counting and coref (on in e2e_tiny.yaml) are report sections with their baselines in the main table
    assert "## People counting (counting)" in report and "## Coreference in multimodal dialogue (coref)" in report
    coref = json.loads((workdir / "results" / "coref" / "metrics.json").read_text())
    main = next(iter(coref["tables"].values()))
    assert {"random label", "most recently mentioned object"} <= {r["model"] for r in main}
    assert {("tiny-s", "before"), ("tiny-s", "fine-tuned")} <= {(r["model"], r["variant"]) for r in main}
    # every number of the report loads with pandas, and the coref cells are the numbers of its metrics.json
    import pandas as pd

    summary = pd.read_csv(workdir / "results" / "summary.csv")
    cell = next(r for r in main if (r["model"], r["variant"]) == ("tiny-s", "fine-tuned"))["object acc"]
    line = summary[(summary.stage == "coref") & (summary.row == "tiny-s / fine-tuned")
                   & (summary.metric == "object acc")].iloc[0]
    assert (line.value, line.lo, line.hi) == pytest.approx((cell["value"], cell["lo"], cell["hi"]))
    assert line.split == "test"
    assert {"coref", "counting", "emr", "reminder", "data", "models"} <= set(summary.stage)

    # a second run has nothing to do
    assert _planned_rules(_snakemake(workdir, "-n")) == set()
    # each rule gets only the settings it reads: a new memory ablation method reruns the ablation and the choice
    # of the reminder context's weights on val (every method is a candidate there), and what reads them; never
    # the data, a pre-training, the teacher or a training
    (workdir / "extra_method.yaml").write_text("memory:\n  methods:\n    only_recency: {recency: 1.0}\n")
    planned = _planned_rules(_snakemake(workdir, "-n", configs=("extra_method.yaml",)))
    assert {"memory_evaluate", "memory_reminder_context", "report"} <= planned, planned
    assert not planned & {"toy_visdial", "prepare_data", "pretrain_toy_vlm", "generate_reminder_data",
                          "finetune_vlm", "train_emr", "train_coref", "finetune_counting"}, planned

    # Snakemake keeps outputs that are still valid: a deleted intermediate alone triggers nothing; asking for it
    # by name rebuilds just that job, and then only what depends on it is out of date
    (workdir / "results" / "reminder" / "metrics.json").unlink()
    assert _planned_rules(_snakemake(workdir, "-n")) == set()
    assert _planned_rules(_snakemake(workdir, "-n", "results/reminder/metrics.json")) == {"reminder_table"}
    _snakemake(workdir, "results/reminder/metrics.json")
    assert _planned_rules(_snakemake(workdir, "-n")) <= {"report", "all"}
    _snakemake(workdir)
    assert _planned_rules(_snakemake(workdir, "-n")) == set()
    # forcing one step reruns it and only what depends on it
    planned = _planned_rules(_snakemake(workdir, "-n", "--forcerun", "build_toy_models"))
    assert "build_toy_models" in planned and "report" in planned
    assert not planned & {"toy_visdial", "prepare_data"}

    # one artifact can be rebuilt by name
    _snakemake(workdir, "results/report.md")
    assert _planned_rules(_snakemake(workdir, "-n")) == set()

    # the HTML report works
    _snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text(errors="replace")
    assert "overview.png" in html


def test_lint_is_clean():
    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_a_mistyped_key_stops_the_workflow_naming_it(tmp_path):
    """`rank: 8` for the LoRA rank used to be filtered out, so r silently stayed 16: now the schema refuses it."""
    typo = tmp_path / "typo.yaml"
    typo.write_text("reminder:\n  finetune:\n    rank: 8\n")
    proc = subprocess.run([*SNAKEMAKE, "-n", "--configfile", "config.yaml", str(typo)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "'rank' was unexpected" in out and "['finetune']" in out, out


def test_dry_run_of_paper_preset_builds_the_dag():
    """The paper preset validates against the schema and plans a DAG (its data need not exist for a dry run
    to fail on missing inputs only)."""
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", "--configfile", "config.yaml", "config/paper.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert "ValidationError" not in out and "schema" not in out.lower(), out
    assert proc.returncode == 0 or "MissingInputException" in out, out


def test_a_coref_model_overrides_the_shared_training_settings():
    """coref.models[].train changes that model's training only: the default gives tiny-m 6 epochs and tiny-s
    coref.train's 8 (CorefTrainConfig refuses an unknown key in either)."""
    targets = [f"results/coref/{m}/finetuned/s0/train_metrics.json" for m in ("tiny-s", "tiny-m")]
    proc = subprocess.run([*SNAKEMAKE, "-n", "-p", "--cores", "1", *targets], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    epochs = {m: json.loads(re.search(rf"--config '(\{{.*?\}})' .*?{m}", out).group(1))["epochs"]
              for m in ("tiny-s", "tiny-m")}
    assert epochs == {"tiny-s": 8, "tiny-m": 6}, out
