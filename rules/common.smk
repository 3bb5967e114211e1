# Shared by all stages: config validation, input functions, wildcard constraints, the report registry.
import json
import os
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate


validate(config, schema="schemas/config.schema.yaml")

# Scripts run by `script:` import the mmemory package from this checkout, in any env (set, not required).
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p)
)

BUILT_MODELS = "results/models/"


def hub_model_refs(cfg):
    """The configured models that are neither built here nor on disk: hub ids such as meta-llama/Llama-3.2-1B."""
    refs = [cfg["models"][k] for k in ("llm", "vlm", "clip")] + [cfg["counting"]["model"]]
    refs += [m["path"] for m in cfg["coref"]["models"]]
    return [r for r in refs if not r.startswith(BUILT_MODELS) and not Path(r).expanduser().exists()]


# Importing mmemory sets HF_HUB_OFFLINE=1 unless the environment sets it (mmemory/hub.py): the embedded default's
# models are all local, so no job may reach the network. A config that names hub ids (config/paper.yaml) lets the
# jobs download them; set HF_HUB_OFFLINE=1 yourself to use only the local cache.
if hub_model_refs(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "0")

# The python a shell command runs: the conda env's under --use-conda, else the one running Snakemake.
PYTHON = "python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method else sys.executable

# Each stage registers what the report gathers (metrics files and captioned figures).
# REPORT_METRICS: {section title: metrics.json path}; REPORT_FIGURES: {figure path: caption}.
REPORT_METRICS = {}
REPORT_FIGURES = {}


wildcard_constraints:
    split="train|val|test",
    seed=r"\d+",


def gpu_job(mem_mb, runtime):
    """A model rule's resources: one GPU when config `gpu` is on, with its memory (MB) and runtime (minutes) at paper
    scale. A cluster profile (profiles/slurm/) maps them to partitions; a local run does not enforce them."""
    return {"gpu": 1 if config["gpu"] else 0, "mem_mb": mem_mb, "runtime": runtime}


def model_param(name, default):
    """A params function: the path of the rule's input `name` (a model the workflow builds or trains), else `default`
    (the configured checkpoint). The one way every rule finds the model it loads."""

    def path(wildcards, input):
        built = list(input.get(name, []))
        return built[0] if built else default

    return path


def settings(section, *keys):
    """The keys of config `section` that a rule reads, and only those, so that an edit to another key reruns nothing;
    the rule's script builds the section's dataclass from them (e.g. mmemory.emr.lm.EmrConfig for emr). Snakemake
    formats no string inside a dict param, so emr.prompt_template keeps its {question}."""
    return {k: config[section][k] for k in keys}


def stage_active(stage):
    """An optional stage runs when config[stage]["activate"] is true (config.yaml, always loaded first, has every
    stage's section)."""
    return bool(config[stage]["activate"])


def model_path(name):
    """The path a rule loads `models.<name>` from."""
    return config["models"][name]


def built_input(path):
    """A DAG input for a model path the workflow builds (under results/models/), else nothing (an external
    checkpoint)."""
    return [path] if path.startswith(BUILT_MODELS) else []


def model_input(name):
    """A DAG input for `models.<name>` when the workflow builds it, else nothing (an external checkpoint)."""
    return built_input(model_path(name))


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
    return {k: v[k] for k in keys if v[k]}  # a null file (val_json, a dense file) is no input


# The training seeds: every trained model (EMR bridges, the reminder adapter) is trained once per seed, and the
# tables give each trained row's mean and spread over them. Untrained rows are computed once, with the first seed.
TRAIN_SEEDS = [int(s) for s in config["train_seeds"]]


# The <reminder> variants (mmemory.reminder.prompts.VARIANTS; tests/test_workflow.py checks they agree): the
# memory variants are prompted with the memory stage's retrieved context; all but base and prompt use the adapter.
ALL_REMINDER_VARIANTS = ["base", "prompt", "finetuned", "finetuned_caption", "finetuned_memory", "oracle_memory",
                         "wrong_memory"]
MEMORY_VARIANTS = ["finetuned_memory", "oracle_memory", "wrong_memory"]
ADAPTER_VARIANTS = [v for v in ALL_REMINDER_VARIANTS if v not in ("base", "prompt")]


def reminder_variant_inputs(w):
    """predict_reminder's extra inputs: the adapter of the seed for the fine-tuned variants, and for the memory
    variants the memory stage's retrieved context of the split."""
    inputs = {}
    if w.variant in ADAPTER_VARIANTS:
        inputs["adapter"] = f"results/reminder/finetuned/s{w.seed}/adapter"
    if w.variant in MEMORY_VARIANTS:
        inputs["memories"] = f"results/memory/reminder_context_{w.split}.json"
    return inputs


def reminder_runs(variants, trained, split="test"):
    """{variant: [metrics.json per seed]}: every training seed for `trained` variants, the first for the rest."""
    return {v: [f"results/reminder/{v}/s{s}/{split}/metrics.json"
                for s in (TRAIN_SEEDS if v in trained else TRAIN_SEEDS[:1])] for v in variants}


def counting_adapter_input(w):
    """predict_counting's adapter: the seed's LoRA adapter for the fine-tuned variant, nothing for the untuned model."""
    return [f"results/counting/finetuned/s{w.seed}/adapter"] if w.variant == "finetuned" else []


def emr_bridge_input(w):
    """eval_emr's bridge: the trained bridge of the variant and seed; none for "before" (it rebuilds the untrained
    bridge from the seed)."""
    return {} if w.variant == "before" else {"bridge": f"results/emr/{w.variant}/s{w.seed}/bridge.safetensors"}


def counting_runs(split="test"):
    """{variant: [predictions.json per seed]}: every training seed after fine-tuning, the first one before."""
    return {"before": [f"results/counting/before/s{TRAIN_SEEDS[0]}/{split}/predictions.json"],
            "finetuned": [f"results/counting/finetuned/s{s}/{split}/predictions.json" for s in TRAIN_SEEDS]}


def coref_models():
    """{name: path} of config coref.models."""
    return {m["name"]: m["path"] for m in config["coref"]["models"]}


def coref_train_settings(w):
    """A params function: coref.train, then the model's own overrides (coref.models[].train), then the training seed,
    as one JSON argument."""
    own = next(m for m in config["coref"]["models"] if m["name"] == w.model).get("train") or {}
    return json.dumps({**config["coref"]["train"], **own, "seed": int(w.seed)})


def coref_toy_models():
    """{name: path} of the coref models the workflow builds (a path under results/models/); each needs its size in
    coref.toy_models, and a config that lacks one stops here, before any job runs."""
    toy = {name: path for name, path in coref_models().items() if path.startswith(BUILT_MODELS)}
    unsized = sorted(set(toy) - set(config["coref"].get("toy_models", {})))
    if unsized:
        raise ValueError(f"config coref.models {unsized}: a path under {BUILT_MODELS} is built by the workflow and "
                         "needs its size in coref.toy_models (or give the path of an existing checkpoint)")
    return toy


def coref_base_input(w):
    """The untuned model of the model wildcard as a DAG input when the workflow builds it, else nothing."""
    return built_input(coref_models()[w.model])


def coref_train_metrics():
    """{model: [train_metrics.json per training seed]}."""
    return {m: [f"results/coref/{m}/finetuned/s{s}/train_metrics.json" for s in TRAIN_SEEDS] for m in coref_models()}


def coref_runs(split="test"):
    """{model: {variant: [eval.json per seed]}}: every training seed after fine-tuning, the first one before."""
    return {m: {"before": [f"results/coref/{m}/before/s{TRAIN_SEEDS[0]}/{split}/eval.json"],
                "finetuned": [f"results/coref/{m}/finetuned/s{s}/{split}/eval.json" for s in TRAIN_SEEDS]}
            for m in coref_models()}


def coref_eval_inputs(w):
    """eval_coref's model input: the fine-tuned model of the seed, or the base model when the workflow builds it."""
    if w.variant == "finetuned":
        return {"model": [f"results/coref/{w.model}/finetuned/s{w.seed}/model"]}
    return {"model": coref_base_input(w)}


def coref_model_param(wildcards, input):
    """A params function: the model a coref rule loads (its `model` input when the workflow made it, else the
    configured checkpoint of the model wildcard)."""
    built = list(input.get("model", []))
    return built[0] if built else coref_models()[wildcards.model]
