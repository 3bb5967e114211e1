"""The conda envs in envs/*.yaml, offline: each lists every package the code its rules run can import (walked through
the mmemory package), and their pins agree where they must (`.ci/envcheck.py`). Snakemake puts its own site-packages
on the path of every `script:` job, so a package missing from an env can still import in a conda job: this is the
check that sees it. The resolver check (`python .ci/envcheck.py resolve`) needs the package index and is run by hand.

Run: pytest tests/test_envs.py
"""
import copy
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_envcheck():
    spec = importlib.util.spec_from_file_location("envcheck", REPO / ".ci" / "envcheck.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["envcheck"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


envcheck = _load_envcheck()


@pytest.fixture(scope="module")
def rules():
    """{env: {rule: rule}} as Snakemake parses the workflow, with the embedded default and with the paper preset."""
    return envcheck.env_rules()


def test_every_env_lists_what_its_rules_import(rules):
    problems = envcheck.check_imports(rules=rules)
    assert not problems, "\n".join(problems)


def test_every_env_of_a_rule_exists_and_every_env_is_used(rules):
    assert set(rules) == {p.stem for p in envcheck.ENVS.glob("*.yaml")}


def test_pins_are_exact_and_agree_where_they_must():
    problems = envcheck.check_pins()
    assert not problems, "\n".join(problems)


def test_removing_a_package_from_an_env_is_caught(rules):
    """nltk in the imagebind env (mmemory.memory.lexical: the memory rules' BM25 stemming; in core it comes with
    rouge-score), faiss-cpu (mmemory.memory.index), trl (the counting fine-tune)."""
    envs = envcheck.all_envs()
    for env, dist, module in (("core", "faiss-cpu", "faiss"), ("imagebind", "nltk", "nltk"),
                              ("unsloth", "faiss-cpu", "faiss"), ("counting", "trl", "trl")):
        broken = copy.deepcopy(envs)
        del broken[env].pip[dist]
        problems = envcheck.check_imports(broken, rules)
        assert any(p.startswith(f"{env}: ") and f" {module} " in p for p in problems), (env, dist, problems)
        assert all(p.startswith(f"{env}: ") for p in problems)  # only the env that lost it


def test_a_config_selected_library_is_required_too(rules):
    """deepspeed is never imported by mmemory: transformers loads it for coref.train.deepspeed."""
    envs = envcheck.all_envs()
    del envs["coref"].pip["deepspeed"]
    assert any("deepspeed" in p and "coref.train.deepspeed" in p for p in envcheck.check_imports(envs, rules))


def test_disagreeing_pins_and_loose_pins_are_caught():
    envs = envcheck.all_envs()
    envs["counting"].pip["transformers"] = "==5.22.0"
    envs["malmm"].pip["tqdm"] = ">=4"
    envs["imagebind"].post_deploy["imagebind"] = "git+https://github.com/facebookresearch/ImageBind.git@main"
    problems = envcheck.check_pins(envs)
    assert any(p.startswith("transformers: pins disagree") and "envs/counting.yaml" in p for p in problems)
    assert any("malmm: tqdm" in p for p in problems)
    assert any("not pinned to a full commit" in p for p in problems)


def test_imagebind_is_installed_without_its_unsatisfiable_requirements():
    """ImageBind's requirements pin torch==1.13.1 (and mayavi, cartopy): it and pytorchvideo come from the post-deploy
    script with --no-deps, beside torch 2.1.2 and setuptools < 82 (imagebind/data.py imports pkg_resources)."""
    env = envcheck.all_envs()["imagebind"]
    assert "imagebind" not in env.pip and "pytorchvideo" not in env.pip
    assert set(env.post_deploy) == {"imagebind", "pytorchvideo"}
    script = (envcheck.ENVS / "imagebind.post-deploy.sh").read_text()
    assert "--no-deps" in script
    assert env.pip["torch"] == "==2.1.2"
    assert int(env.pip["setuptools"].removeprefix("==").split(".")[0]) < 82
    assert "mayavi" not in env.pip and "cartopy" not in env.pip


def test_the_import_walk_follows_functions_not_just_modules():
    """A lazily imported library counts where a reached function imports it, not where a module merely defines a
    function that imports it: counting's training reaches nothing of mmemory.memory (faiss)."""
    walk = envcheck.third_party_imports
    counting = walk(REPO / "workflow_scripts" / "counting_finetune.py")
    assert {"trl", "peft", "datasets", "torch"} <= set(counting) and "faiss" not in counting
    reminder = walk(REPO / "workflow_scripts" / "finetune_vlm.py")
    assert "faiss" in reminder  # the memory block of training examples imports mmemory.memory
    assert "nltk" in walk(REPO / "workflow_scripts" / "memory_evaluate.py")
