"""Strict, typed settings: each stage's config section is a dataclass built by `from_dict`, which refuses an unknown
key by name (a typo never silently falls back to a default). The defaults in the dataclasses are the embedded
default's values in config.yaml (tests/test_config.py checks that they agree), so a setting is written once.

    cfg = FinetuneConfig.from_dict(config["reminder"]["finetune"])   # ConfigError on `rank: 8`
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

from mmemory.io import InputError, atomic_write_json


class ConfigError(InputError):
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


def _matches(value, annotation) -> bool:
    """Whether `value` fits a field annotation: int for float is fine, bool is never an int or a float."""
    if annotation is typing.Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return isinstance(value, (list, tuple)) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def check_types(obj) -> None:
    """ConfigError naming the section, the key, the value and the type it needs, for the first field of the
    dataclass `obj` whose value does not fit its annotation (`{"epochs": "abc"}` fails here, not deep in a trainer)."""
    hints = typing.get_type_hints(type(obj))
    section = getattr(obj, "SECTION", type(obj).__name__)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not _matches(value, hints[f.name]):
            want = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "..."
            raise ConfigError(f"config {section}: {f.name} is {shown} ({type(value).__name__}), not {want}. Fix: "
                              f"give {f.name} a value of that type (see config.yaml)")


class StrictConfig:
    """Mixin for a stage's config dataclass: `SECTION` names its place in config.yaml. Every value is type-checked
    when the dataclass is built (`check_types`); a subclass with its own `__post_init__` calls `check_types` itself."""

    SECTION = ""

    def __post_init__(self):
        check_types(self)

    @classmethod
    def from_dict(cls, values: dict):
        return from_dict(cls, values, cls.SECTION)

    def save(self, path: str | Path) -> None:
        """Write the settings beside what they made (a checkpoint, an adapter), as JSON."""
        atomic_write_json(path, {"section": self.SECTION, **dataclasses.asdict(self)}, indent=2)
