"""The registry of config sections: every mapping of config.yaml that library code reads, with the strict dataclass
(`mmemory.config.StrictConfig`) it is built through. tests/test_config.py checks each against config.yaml and the
schema; tests/test_paper_preset.py builds each from config/paper.yaml merged over config.yaml."""
from pathlib import Path

import yaml

from mmemory.coref.evaluate import CorefEvalConfig
from mmemory.coref.models import CorefToySize
from mmemory.coref.stage import CorefDataConfig
from mmemory.coref.train import CorefTrainConfig
from mmemory.counting.data import CountingDataConfig
from mmemory.counting.model import CountingToySize
from mmemory.counting.predict import CountingGenerationConfig
from mmemory.counting.train import CountingTrainConfig
from mmemory.emr.bridge import BridgeConfig
from mmemory.emr.data import EmrEncoderConfig, ExtractConfig
from mmemory.emr.evaluate import EmrEvalConfig
from mmemory.emr.lm import EmrConfig
from mmemory.emr.train import TrainConfig
from mmemory.memory.context import ReminderContextConfig
from mmemory.memory.index import IndexConfig
from mmemory.memory.observations import ObservationConfig
from mmemory.memory.scoring import MemoryConfig, TuneConfig
from mmemory.memory.sessions import SessionsConfig
from mmemory.memory.stage import MemoryEncoderConfig
from mmemory.prepare import DataConfig, VisDialConfig
from mmemory.reminder.evaluate import EvaluationConfig
from mmemory.reminder.finetune import FinetuneConfig
from mmemory.reminder.predict import GenerationConfig
from mmemory.reminder.prompts import PromptsConfig, ReminderConfig
from mmemory.reminder.teachers import TeacherConfig
from mmemory.report import ReportConfig
from mmemory.toy.models import ToySizes
from mmemory.toy.pretrain import ToyClipConfig, ToyLLMConfig
from mmemory.toy.pretrain_vlm import PretrainVLMConfig
from mmemory.toy.visdial import ToyVisDialConfig

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "rules" / "schemas" / "config.schema.yaml").read_text())

# One dataclass per section; its SECTION is the section's path in config.yaml.
SECTIONS = [
    DataConfig, ToyVisDialConfig, VisDialConfig, ToySizes, ReportConfig,
    EmrConfig, EmrEncoderConfig, ToyClipConfig, ToyLLMConfig, ExtractConfig, BridgeConfig, TrainConfig, EmrEvalConfig,
    ReminderConfig, PromptsConfig, TeacherConfig, FinetuneConfig, PretrainVLMConfig, GenerationConfig,
    EvaluationConfig,
    MemoryConfig, MemoryEncoderConfig, IndexConfig, SessionsConfig, TuneConfig, ObservationConfig,
    ReminderContextConfig,
    CountingDataConfig, CountingToySize, CountingTrainConfig, CountingGenerationConfig,
    CorefDataConfig, CorefTrainConfig, CorefEvalConfig,
]
# coref.toy_models maps a model name to its size: each entry is built through CorefToySize.
NAMED_ENTRIES = [CorefToySize]
# Fields that the workflow sets itself rather than config.yaml: the training seed (one of train_seeds) and the toy
# image size of the tiny models (data.toy.image_size).
SET_BY_WORKFLOW = {"emr.train": {"seed"}, "reminder.finetune": {"seed"}, "counting.train": {"seed"},
                   "coref.train": {"seed"}, "models.toy": {"image_size"}}
# Mappings whose keys only the workflow reads (rules/*.smk: switches, model paths, seeds); no library code reads them,
# so they have no dataclass. "" is the top level.
WORKFLOW_ONLY = {"": {"gpu", "gpu_check", "seed", "train_seeds"}, "models": {"tokenizer", "llm", "vlm", "clip"},
                 "counting": {"activate", "model"}, "coref": {"activate", "processes", "models"}}
PATHS = {cls.SECTION for cls in SECTIONS + NAMED_ENTRIES}


def node(tree: dict, path: str, schema: bool = False):
    """The mapping at a dotted `path` of a config (or, `schema`, of the JSON schema); None when absent."""
    for part in filter(None, path.split(".")):
        tree = (tree.get("properties", {}) if schema else tree).get(part)
        if tree is None:
            return None
    return tree


def own_keys(path: str, keys) -> set[str]:
    """The keys of the mapping at `path` that belong to it, not to a section of their own (emr's bridge, ...)."""
    return {k for k in keys if f"{path}.{k}".lstrip(".") not in PATHS}


def values(cfg: dict, cls) -> dict:
    """The section of `cls` in a config, without its subsections."""
    section = node(cfg, cls.SECTION) or {}
    return {k: v for k, v in section.items() if k in own_keys(cls.SECTION, section)}


def merged(default: dict, preset: dict) -> dict:
    """`preset` merged over `default` as Snakemake merges a --configfile over config.yaml (mappings key by key)."""
    out = dict(default)
    for k, v in preset.items():
        out[k] = merged(default[k], v) if isinstance(v, dict) and isinstance(default.get(k), dict) else v
    return out
