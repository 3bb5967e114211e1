"""Strict, typed settings: each stage's config section is a dataclass built by `from_dict`, which refuses an unknown
key by name (a typo never silently falls back to a default). The defaults in the dataclasses are the embedded
default's values in config.yaml (tests/test_config.py checks that they agree), so a setting is written once.

    cfg = FinetuneConfig.from_dict(config["reminder"]["finetune"])   # ConfigError on `rank: 8`
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from mmemory.io import atomic_write_json


class ConfigError(ValueError):
    """A config section that does not match its dataclass."""


def from_dict(cls, values: dict, section: str | None = None):
    """`cls(**values)`, refusing keys that are not fields of `cls` and naming them with the config section."""
    section = section or getattr(cls, "SECTION", cls.__name__)
    if not isinstance(values, dict):
        raise ConfigError(f"config {section}: expected a mapping, got {type(values).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"config {section}: unknown key(s) {', '.join(map(repr, unknown))}; the keys of this "
                          f"section are {', '.join(sorted(fields))} (see config.yaml)")
    return cls(**values)


class StrictConfig:
    """Mixin for a stage's config dataclass: `SECTION` names its place in config.yaml."""

    SECTION = ""

    @classmethod
    def from_dict(cls, values: dict):
        return from_dict(cls, values, cls.SECTION)

    def save(self, path: str | Path) -> None:
        """Write the settings beside what they made (a checkpoint, an adapter), as JSON."""
        atomic_write_json(path, {"section": self.SECTION, **dataclasses.asdict(self)}, indent=2)
