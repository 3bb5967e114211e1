# Shared by all stages: config validation, input functions, wildcard constraints, the report registry.
import os
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="schemas/config.schema.yaml")

# Scripts run by `script:` import the mmemory package from this checkout, in any env (set, not required).
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p)
)

BUILT_MODELS = "results/models/"

# Each stage registers what the report gathers (metrics files and captioned figures).
# REPORT_METRICS: {section title: metrics.json path}; REPORT_FIGURES: {figure path: caption}.
REPORT_METRICS = {}
REPORT_FIGURES = {}


wildcard_constraints:
    split="train|val|test",
    seed=r"\d+",


def stage_active(stage):
    """An optional stage runs when config[stage]["activate"] is true (absent section: off)."""
    return bool(config.get(stage, {}).get("activate", False))


def model_path(name):
    """The path a rule loads `models.<name>` from."""
    return config["models"][name]


def model_input(name):
    """A DAG input for `models.<name>` when the workflow builds it, else nothing (an external checkpoint)."""
    path = model_path(name)
    return [path] if path.startswith(BUILT_MODELS) else []


def visdial_source():
    """Raw VisDial inputs for prepare_data: the toy renderer's files, or the user's (config data.visdial).
    Real VisDial: our test split is the official v1.0 val file (the official test file has no answers); our val
    split is data.visdial.val_json, or data.visdial.val_from_train dialogues held out of train."""
    if config["data"]["source"] == "toy":
        root = "results/toy_visdial"
        files = {f"{s}_json": f"{root}/visdial_1.0_{s}.json" for s in ("train", "val", "test")}
        files |= {f"{s}_images": f"{root}/images/{s}" for s in ("train", "val", "test")}
        return files | {f"{s}_dense": f"{root}/visdial_1.0_{s}_dense_annotations.json" for s in ("val", "test")}
    v = config["data"]["visdial"]
    keys = ("train_json", "train_images", "val_json", "val_images", "val_dense", "test_json", "test_images",
            "test_dense")
    return {k: v[k] for k in keys if v.get(k)}


# The training seeds: every trained model (EMR bridges, the reminder adapter) is trained once per seed, and the
# tables give each trained row's mean and spread over them. Untrained rows are computed once, with the first seed.
TRAIN_SEEDS = [int(s) for s in config["train_seeds"]]
