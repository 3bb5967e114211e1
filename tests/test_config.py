"""Strict typed settings: each section's dataclass refuses unknown keys by name, and its defaults are config.yaml's.

Run: pytest tests/test_config.py
"""
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from mmemory.config import ConfigError
from mmemory.emr.bridge import BridgeConfig
from mmemory.coref.evaluate import CorefEvalConfig
from mmemory.coref.stage import CorefDataConfig
from mmemory.coref.train import CorefTrainConfig
from mmemory.counting.data import CountingDataConfig
from mmemory.counting.model import CountingToySize
from mmemory.counting.predict import CountingGenerationConfig
from mmemory.counting.train import CountingTrainConfig
from mmemory.emr.train import TrainConfig
from mmemory.reminder.finetune import FinetuneConfig
from mmemory.reminder.predict import GenerationConfig
from mmemory.toy.pretrain_vlm import PretrainVLMConfig

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
# fields the workflow sets itself rather than config.yaml (the training seed comes from train_seeds)
SET_BY_WORKFLOW = {"seed"}
SECTIONS = [BridgeConfig, TrainConfig, FinetuneConfig, GenerationConfig, CountingDataConfig, CountingToySize,
            CountingTrainConfig, CountingGenerationConfig, CorefDataConfig, CorefTrainConfig, CorefEvalConfig,
            PretrainVLMConfig]


def section(cls) -> dict:
    node = CONFIG
    for part in cls.SECTION.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.SECTION)
def test_defaults_are_written_once_the_dataclass_agrees_with_config_yaml(cls):
    values = section(cls)
    names = {f.name for f in fields(cls)}
    assert set(values) <= names, f"config.yaml {cls.SECTION} has keys the dataclass lacks: {set(values) - names}"
    assert names - set(values) <= SET_BY_WORKFLOW, f"{cls.SECTION}: no config.yaml value for {names - set(values)}"
    default = cls()
    for key, value in values.items():
        assert getattr(default, key) == value, f"{cls.SECTION}.{key}: dataclass {getattr(default, key)!r}, " \
                                                f"config.yaml {value!r}"
    assert cls.from_dict(values) == default


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.SECTION)
def test_an_unknown_key_is_refused_by_name_and_section(cls):
    with pytest.raises(ConfigError, match=rf"config {cls.SECTION}: unknown key\(s\) 'rank'"):
        cls.from_dict({**section(cls), "rank": 8})


def test_the_lora_rank_reaches_the_config_and_is_saved_beside_the_adapter(tmp_path):
    cfg = FinetuneConfig.from_dict({**section(FinetuneConfig), "r": 8, "seed": 2})
    assert (cfg.r, cfg.seed) == (8, 2)
    cfg.save(tmp_path / "finetune_config.json")
    saved = yaml.safe_load((tmp_path / "finetune_config.json").read_text())
    assert saved["section"] == "reminder.finetune" and saved["r"] == 8 and saved["seed"] == 2


def test_the_paper_presets_in_code_match_config_paper_yaml():
    """`PAPER_TRAIN` (what a library user reads) and config/paper.yaml (what the workflow runs) hold one preset."""
    from mmemory.counting.train import PAPER_TRAIN as COUNTING_PAPER

    paper = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "paper.yaml").read_text())
    code = yaml.safe_load(COUNTING_PAPER)["counting"]
    assert paper["counting"]["model"] == code["model"]
    assert paper["counting"]["train"] == code["train"]
    assert paper["counting"]["generation"] == code["generation"]
    CountingTrainConfig.from_dict(paper["counting"]["train"])


def test_the_coref_paper_preset_in_code_matches_config_paper_yaml():
    from mmemory.coref.train import PAPER_TRAIN as COREF_PAPER

    paper = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "paper.yaml").read_text())
    assert paper["coref"]["train"] == yaml.safe_load(COREF_PAPER)["coref"]["train"]


@pytest.mark.parametrize("cls", [CountingDataConfig, CorefDataConfig], ids=lambda c: c.SECTION)
def test_the_schema_lists_every_field_of_the_data_sections(cls):
    """A field added to a data section (e.g. counting.data.verify_images) is in the schema, so a config can set it."""
    node = yaml.safe_load((Path(__file__).resolve().parents[1] / "rules" / "schemas" / "config.schema.yaml").read_text())
    for part in cls.SECTION.split("."):
        node = node["properties"][part]
    assert set(node["properties"]) == {f.name for f in fields(cls)}
