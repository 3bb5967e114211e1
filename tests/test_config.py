"""One home per setting: every section of config.yaml that code reads is built through a strict dataclass whose
defaults are config.yaml's values, and the schema lists exactly its fields; each is checked in both directions, for
every section in the registry (tests/_config_sections.py).

Run: pytest tests/test_config.py
"""
from dataclasses import MISSING, fields

import pytest
import yaml
from _config_sections import (CONFIG, NAMED_ENTRIES, PAPER, PATHS, SCHEMA, SECTIONS, SET_BY_WORKFLOW, WORKFLOW_ONLY,
                              node, own_keys, values)

from mmemory.config import ConfigError, check_types
from mmemory.counting.train import CountingTrainConfig
from mmemory.reminder.finetune import FinetuneConfig


def field_names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


def default_of(f):
    return f.default_factory() if f.default is MISSING else f.default


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.SECTION)
def test_the_keys_of_config_yaml_are_the_fields_of_the_dataclass(cls):
    keys, names = set(values(CONFIG, cls)), field_names(cls)
    assert keys - names == set(), f"config.yaml {cls.SECTION} has keys the dataclass lacks"
    assert names - keys == SET_BY_WORKFLOW.get(cls.SECTION, set()), f"{cls.SECTION}: fields without a config.yaml key"


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.SECTION)
def test_the_defaults_of_the_dataclass_are_the_values_of_config_yaml(cls):
    default = cls()
    check_types(default)
    for key, value in values(CONFIG, cls).items():
        assert getattr(default, key) == value, f"{cls.SECTION}.{key}: dataclass {getattr(default, key)!r}, " \
                                                f"config.yaml {value!r}"
    assert cls.from_dict(values(CONFIG, cls)) == default


@pytest.mark.parametrize("cls", SECTIONS + NAMED_ENTRIES, ids=lambda c: c.SECTION)
def test_the_schema_lists_exactly_the_fields_and_gives_their_defaults(cls):
    """A field added to a dataclass (e.g. memory.index.kmeans_niter) is in the schema, so a config can set it; a
    schema property no dataclass has would be accepted by the workflow and then refused by the job."""
    section = node(SCHEMA, cls.SECTION, schema=True)
    assert section is not None, f"the schema has no {cls.SECTION}"
    if cls in NAMED_ENTRIES:
        section = section["additionalProperties"]
    props = set(own_keys(cls.SECTION, section["properties"]))
    assert props == field_names(cls) - SET_BY_WORKFLOW.get(cls.SECTION, set()), cls.SECTION
    assert section.get("additionalProperties") is False, f"the schema lets {cls.SECTION} take unknown keys"
    for f in fields(cls):
        if "default" in section["properties"].get(f.name, {}):
            assert section["properties"][f.name]["default"] == default_of(f), f"{cls.SECTION}.{f.name}"


@pytest.mark.parametrize("cls", NAMED_ENTRIES, ids=lambda c: c.SECTION)
def test_every_named_entry_has_the_fields_of_its_dataclass(cls):
    """coref.toy_models maps a model name to its size: every entry has each field (no default to fall back on)."""
    for name, entry in node(CONFIG, cls.SECTION).items():
        assert set(entry) == field_names(cls), f"{cls.SECTION}.{name}"
        cls.from_dict(entry)


def test_every_mapping_that_code_reads_has_a_dataclass():
    """Each mapping of config.yaml with settings of its own (not only subsections) is in the registry, or holds
    only keys the workflow reads itself (WORKFLOW_ONLY): a new section cannot be read with `.get(key, default)`."""
    def walk(tree: dict, path: str):
        own = own_keys(path, tree)
        if path in PATHS:
            return
        assert own <= WORKFLOW_ONLY.get(path, set()) | {k for k in own if isinstance(tree[k], dict)}, \
            f"config.yaml {path or 'top level'}: {sorted(own - WORKFLOW_ONLY.get(path, set()))} have no dataclass"
        for k, v in tree.items():
            if isinstance(v, dict) and f"{path}.{k}".lstrip(".") not in WORKFLOW_ONLY:
                walk(v, f"{path}.{k}".lstrip("."))

    walk(CONFIG, "")


def test_the_registry_has_one_dataclass_per_section():
    paths = [cls.SECTION for cls in SECTIONS + NAMED_ENTRIES]
    assert len(paths) == len(set(paths)) and all(node(CONFIG, p) is not None for p in paths)


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.SECTION)
def test_an_unknown_key_is_refused_by_name_and_section(cls):
    with pytest.raises(ConfigError, match=rf"config {cls.SECTION}: unknown key\(s\) 'rank'"):
        cls.from_dict({**values(CONFIG, cls), "rank": 8})


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.SECTION)
def test_a_value_of_the_wrong_type_is_refused_by_name(cls):
    f = next(f for f in fields(cls) if default_of(f) is not None)
    wrong = 123 if isinstance(default_of(f), str) else "abc"
    with pytest.raises(ConfigError, match=rf"config {cls.SECTION}: {f.name} is {wrong!r}"):
        cls.from_dict({**values(CONFIG, cls), f.name: wrong})


def test_the_lora_rank_reaches_the_config_and_is_saved_beside_the_adapter(tmp_path):
    cfg = FinetuneConfig.from_dict({**values(CONFIG, FinetuneConfig), "r": 8, "seed": 2})
    assert (cfg.r, cfg.seed) == (8, 2)
    cfg.save(tmp_path / "finetune_config.json")
    saved = yaml.safe_load((tmp_path / "finetune_config.json").read_text())
    assert saved["section"] == "reminder.finetune" and saved["r"] == 8 and saved["seed"] == 2


def test_the_paper_presets_in_code_match_config_paper_yaml():
    """`PAPER_TRAIN` (what a library user reads) and config/paper.yaml (what the workflow runs) hold one preset:
    the same overrides of config.yaml's values."""
    from mmemory.counting.train import PAPER_TRAIN as COUNTING_PAPER

    code = yaml.safe_load(COUNTING_PAPER)["counting"]
    assert PAPER["counting"]["model"] == code["model"]
    assert PAPER["counting"]["train"] == code["train"]
    assert PAPER["counting"]["generation"] == code["generation"]
    CountingTrainConfig.from_dict(code["train"])


def test_the_coref_paper_preset_in_code_matches_config_paper_yaml():
    from mmemory.coref.train import PAPER_TRAIN as COREF_PAPER

    assert PAPER["coref"]["train"] == yaml.safe_load(COREF_PAPER)["coref"]["train"]


def test_a_misspelt_scoring_component_fails_when_the_config_is_read():
    """memory.methods and memory.reminder.weights name scoring components; a typo is a ConfigError naming the section,
    not a KeyError at the first query."""
    from mmemory.memory.context import ReminderContextConfig
    from mmemory.memory.scoring import MemoryConfig

    with pytest.raises(ConfigError, match=r"memory.reminder: weights: unknown scoring component\(s\) \['relevnce'\]"):
        ReminderContextConfig.from_dict({"weights": {"relevnce": 1.0}})
    with pytest.raises(ConfigError, match=r"memory: methods.mine: unknown scoring component"):
        MemoryConfig.from_dict({"methods": {"mine": {"recncy": 1.0}}})
