"""Shared fixtures: a small toy VisDial dataset rendered once per session (offline, deterministic)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmemory.toy.visdial import build_toy_visdial

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    """A pristine toy VisDial directory (12 train / 4 val / 4 test dialogues). Do not modify: copy it (see `toy_copy`)."""
    root = tmp_path_factory.mktemp("toy_visdial")
    build_toy_visdial(root, n_train=12, n_val=4, image_size=48, seed=7, memory_share=0.0)
    return root


@pytest.fixture
def toy_copy(toy_root, tmp_path) -> Path:
    """A private, writable copy of the toy dataset for tests that break it."""
    dst = tmp_path / "toy"
    shutil.copytree(toy_root, dst)
    return dst
