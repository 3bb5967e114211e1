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
    split="train|val",


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
    """Raw VisDial inputs for prepare_data: the toy renderer's files, or the user's (config data.visdial)."""
    if config["data"]["source"] == "toy":
        root = "results/toy_visdial"
        return {
            "train_json": f"{root}/visdial_1.0_train.json",
            "val_json": f"{root}/visdial_1.0_val.json",
            "val_dense": f"{root}/visdial_1.0_val_dense_annotations.json",
            "train_images": f"{root}/images/train",
            "val_images": f"{root}/images/val",
        }
    v = config["data"]["visdial"]
    return {k: v[k] for k in ("train_json", "val_json", "val_dense", "train_images", "val_images") if v.get(k)}
