"""Shared synthetic fixtures for the memory tests: a deterministic fake encoder and a tiny toy VisDial split."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
from _toy import prepared_toy

from mmemory.visdial import load_visdial


class FakeEncoder:
    """Bag of hashed words (texts) / hashed file bytes (images) in one 64-d space, L2-normalised, deterministic.

    Texts sharing words are similar, so relevance behaves like a (crude) lexical-semantic encoder; an image is
    encoded as the text of its sidecar caption file when one exists (`x.png.txt`), which puts images and captions
    in one shared space as a CLIP would.
    """

    dim = 64
    stop = {"a", "an", "the", "is", "are", "of", "and", "do", "did", "you", "we", "it", "in", "with", "that", "what",
            "there", "about", "say", "remember", "this", "look", "at"}

    def __init__(self):
        self.calls = 0

    def _words(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, np.float32)
        for w in re.findall(r"[a-z0-9]+", text.lower()):
            if w in self.stop:
                continue
            v[int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        v[0] += 0.05  # never all-zero
        return v / np.linalg.norm(v)

    def encode_texts(self, texts):
        self.calls += 1
        return np.stack([self._words(t) for t in texts]).astype(np.float32)

    def encode_images(self, paths):
        self.calls += 1
        out = []
        for p in paths:
            side = Path(str(p) + ".txt")
            out.append(self._words(side.read_text() if side.exists() else hashlib.md5(Path(p).read_bytes()).hexdigest()))
        return np.stack(out).astype(np.float32)


def toy_split(root: Path, n_val: int = 16, split: str = "val"):
    """A tiny prepared toy VisDial split (dialogues carry image_path) and its path."""
    root = Path(root)
    path = prepared_toy(root, n_train=2, n_val=n_val, image_size=32, seed=0)[split]
    data = json.loads(path.read_text())
    for d in data["data"]["dialogs"]:  # a sidecar caption lets the fake encoder embed the image
        Path(d["image_path"] + ".txt").write_text(d["caption"])
    return load_visdial(path), path
