"""What the paper preset asks of a GPU cluster, checked on a CPU: the SLURM profile's resources for each GPU rule
(the 8-GPU coref job on one node), the DeepSpeed ZeRO-3 config (torch's AdamW, no nvcc), and every section of
config/paper.yaml through its strict dataclass.

Run: pytest tests/test_paper_preset.py
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
DS_ZERO3 = REPO / "resources" / "coref" / "ds_zero3.json"


@pytest.fixture(scope="module")
def paper_rules() -> dict:
    """{rule: {conda, script, shell, resources}} as Snakemake parses the workflow with the paper preset."""
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "_workflow_rules.py"), "config.yaml",
                           "config/paper.yaml"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["name"]: r for r in json.loads(proc.stdout)}


def slurm_resources(rule: dict) -> dict:
    """A job's resources as the SLURM executor sees them: the profile's defaults, the rule's own, then the profile's
    set-resources for the rule."""
    return {**PROFILE["default-resources"], **rule["resources"], **PROFILE["set-resources"].get(rule["name"], {})}


def test_train_coref_asks_for_its_gpus_on_one_node(paper_rules):
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    res = slurm_resources(paper_rules["train_coref"])
    assert res["gpu"] == res["nproc"] == paper["coref"]["processes"] == 8
    assert res["nodes"] == 1  # the executor writes --nodes=1 beside --gpus=8
    assert res["slurm_partition"] == "gpu"
    assert "--standalone" in paper_rules["train_coref"]["shell"]  # one node's torchrun: why nodes must be 1


def test_every_gpu_rule_goes_to_the_gpu_partition_and_multi_gpu_jobs_to_one_node(paper_rules):
    for name, rule in paper_rules.items():
        res = slurm_resources(rule)
        if res.get("gpu", 0):
            assert res["slurm_partition"] == "gpu", name
        if res.get("gpu", 0) > 1:
            assert res.get("nodes") == 1, name
    assert set(PROFILE["set-resources"]) <= set(paper_rules), "the profile names a rule the workflow lacks"


@pytest.mark.skipif(importlib.util.find_spec("snakemake_executor_plugin_slurm") is None
                    or importlib.util.find_spec("snakemake_executor_plugin_slurm_jobstep") is None,
                    reason="snakemake-executor-plugin-slurm is not installed (pip install "
                           "snakemake-executor-plugin-slurm==2.8.0 to check the sbatch line itself)")
def test_the_sbatch_line_of_train_coref_has_nodes_and_gpus(paper_rules):
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Res(dict):
        __getattr__ = dict.__getitem__

    res = Res(slurm_resources(paper_rules["train_coref"]))
    job = SimpleNamespace(resources=res, threads=1, is_group=lambda: False, name="train_coref")
    params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "", "partition": "-p gpu",
              "workdir": None}
    call = get_submit_command(job, params) + set_gres_string(job)
    assert "--nodes=1" in call and "--gpus=8" in call and "-p gpu" in call


def test_ds_zero3_uses_torch_adamw_so_no_cuda_compiler_is_needed():
    ds = json.loads(DS_ZERO3.read_text())
    assert ds["optimizer"]["type"] == "AdamW"
    # DeepSpeed builds FusedAdam (JIT-compiled with nvcc on first use) unless torch_adam is set or the optimizer
    # is offloaded (DeepSpeedCPUAdam, also compiled); torch_adam picks torch.optim.AdamW, which ZeRO supports
    assert ds["optimizer"]["params"]["torch_adam"] is True
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "none"


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="deepspeed is not installed here (it is in envs/coref.yaml); TrainingArguments needs it to "
                           "read a DeepSpeed config")
def test_ds_zero3_loads_through_training_arguments_with_torch_adam(tmp_path):
    from mmemory.coref.train import CorefTrainConfig, training_args

    cfg = CorefTrainConfig(deepspeed=str(DS_ZERO3), fp16=True, learning_rate=2e-5, weight_decay=0.01, batch_size=2,
                           grad_accum=4)
    args = training_args(cfg, str(tmp_path / "ckpt"), evaluate=False)
    ds = args.hf_deepspeed_config.config
    assert ds["optimizer"]["params"] == {"lr": 2e-5, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01,
                                         "torch_adam": True}
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["gradient_accumulation_steps"] == 4


def test_every_paper_section_passes_its_strict_dataclass():
    from _config_sections import CONFIG, NAMED_ENTRIES, PAPER, SECTIONS, merged, node, values

    cfg = merged(CONFIG, PAPER)  # Snakemake merges the preset over config.yaml, mapping by mapping
    for cls in SECTIONS:
        built = cls.from_dict(values(cfg, cls))
        if hasattr(built, "dtype"):
            assert built.dtype == "auto", cls.SECTION
    for cls in NAMED_ENTRIES:
        for entry in (node(cfg, cls.SECTION) or {}).values():
            cls.from_dict(entry)
    assert cfg["emr"]["llm_dtype"] == "auto" and cfg["emr"]["train"]["gradient_checkpointing"] is True
    assert cfg["reminder"]["generation"]["backend"] == cfg["reminder"]["finetune"]["backend"] == "unsloth"
    assert cfg["reminder"]["teacher"]["host"] is None  # $OLLAMA_HOST: never the compute node's own 127.0.0.1


def test_the_paper_preset_holds_only_overrides():
    """No key of config/paper.yaml repeats config.yaml's value (one home per setting: a default changed in
    config.yaml reaches the paper preset unless the preset says otherwise), and every key is one config.yaml has."""
    def walk(preset: dict, default: dict, path: str = ""):
        for key, value in preset.items():
            where = f"{path}{key}"
            assert key in default, f"config/paper.yaml {where} is not a key of config.yaml"
            if isinstance(value, dict) and isinstance(default[key], dict) and default[key]:
                walk(value, default[key], f"{where}.")
            else:
                assert value != default[key], f"config/paper.yaml {where}: {value!r} is config.yaml's value; remove it"

    walk(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()),
         yaml.safe_load((REPO / "config.yaml").read_text()))
