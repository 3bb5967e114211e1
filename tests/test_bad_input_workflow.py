"""Bad input through the workflow: a Mall directory holding both seq_000001.jpg and seq_1.jpg stops the counting_data
job in strict mode, whose log is one line naming both files and the fix (no traceback), exit code 2, nothing
written; and a bad-input error of any stage's data step ends a job that way (`mmemory.io.setup_logging`).

    pytest tests/test_bad_input_workflow.py -q
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from test_counting_data import _frame, make_mall

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "config", "rules", "workflow_scripts", "resources", "envs", "profiles")


def test_an_input_error_in_a_job_is_one_log_line_and_exit_2(tmp_path):
    log = tmp_path / "logs" / "job.log"
    code = ("from mmemory.io import setup_logging\nsetup_logging(%r)\n"
            "from mmemory.counting.data import read_mall\nread_mall(%r)\n") % (str(log), str(tmp_path / "nowhere"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2
    lines = log.read_text().strip().splitlines()
    assert len(lines) == 1 and "ERROR" in lines[0] and "no labels.csv" in lines[0] and "Fix:" in lines[0]
    assert "Traceback" not in log.read_text()
    r = subprocess.run([sys.executable, "-c", code.replace("read_mall(", "raise RuntimeError(")],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 1 and "Traceback" in log.read_text()  # a bug is still a traceback


def test_mall_with_two_files_for_one_id_stops_the_workflow_naming_both(tmp_path):
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    mall = tmp_path / "mall"
    frames = make_mall(mall, n=12)
    _frame(frames / "seq_1.jpg", 20)
    (tmp_path / "mall.yaml").write_text(f"counting:\n  data: {{source: mall, path: {mall}}}\n")
    r = subprocess.run([sys.executable, "-m", "snakemake", "results/counting/data_report.json", "--cores", "1",
                        "--configfile", "config.yaml", "mall.yaml"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode != 0 and "exit status 2" in r.stderr, r.stderr[-3000:]
    log = (tmp_path / "results" / "logs" / "counting" / "counting_data.log").read_text()
    lines = log.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in log, log[-3000:]
    assert "seq_000001.jpg" in lines[0] and "seq_1.jpg" in lines[0] and "Fix:" in lines[0]
    assert not list((tmp_path / "results" / "counting").glob("data/*.json"))
    assert list((tmp_path / "results" / "logs" / "counting" / "attempts").glob("counting_data.*.log"))
