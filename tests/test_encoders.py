"""Encoder interface tests: `pytest tests/test_encoders.py` (offline; a tiny CLIP, MiniLM, a fake ImageBind API)."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from _emr_fixtures import make_toy_world
from mmemory.encoders import ImageError, clip_text_inputs, load_encoder, open_image


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_toy_world(tmp_path_factory.mktemp("enc"), n_train=4, n_val=2)


def _images(world):
    import json

    data = json.loads(open(world["train"]).read())["data"]["dialogs"]
    return [d["image_path"] for d in data]


def test_clip_encoder_shapes_and_normalisation(world):
    enc = load_encoder("clip", world["clip"], batch_size=3)
    imgs = enc.encode_images(_images(world))
    txt = enc.encode_texts(["a picture of a red circle", "is there a blue square?", "no"])
    assert imgs.shape == (4, enc.dim) and txt.shape == (3, enc.dim)
    assert imgs.dtype == np.float32 and txt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(imgs, axis=1), 1.0, rtol=1e-5)
    # different images give different embeddings (nothing constant, nothing zero-filled)
    assert np.abs(imgs[0] - imgs[1]).max() > 1e-4


def test_clip_text_inputs_end_in_eos_and_right_pad(world):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(world["clip"])
    ids, mask = clip_text_inputs(tok, ["a red circle", "a"], max_length=8)
    for row, m in zip(ids, mask):
        n = int(m.sum())
        assert row[n - 1] == tok.eos_token_id  # CLIP pools at EOS
        assert m[:n].all() and not m[n:].any()
    long_ids, _ = clip_text_inputs(tok, ["red " * 50], max_length=8)
    assert long_ids.shape[1] == 8 and long_ids[0, -1] == tok.eos_token_id


def test_text_embedding_does_not_depend_on_batch_padding(world):
    enc = load_encoder("clip", world["clip"])
    alone = enc.encode_texts(["no"])
    padded = enc.encode_texts(["no", "what color is the circle at the top left?"])
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)


def test_corrupt_image_raises_naming_the_file(world, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageError, match="bad.png"):
        open_image(bad)
    enc = load_encoder("clip", world["clip"])
    with pytest.raises(ImageError, match="quarantine"):
        enc.encode_images([bad])


def test_minilm_text_only():
    enc = load_encoder("minilm")
    x = enc.encode_texts(["a red circle", "a red circle", "the weather is nice"])
    assert x.shape == (3, 384)
    assert float(x[0] @ x[1]) > 0.999 and float(x[0] @ x[2]) < 0.9
    with pytest.raises(NotImplementedError, match="text-only"):
        enc.encode_images(["x.png"])


def test_unknown_kind_and_missing_clip(tmp_path):
    with pytest.raises(ValueError, match="imagebind, clip, minilm"):
        load_encoder("vit")
    with pytest.raises(FileNotFoundError, match="models.clip"):
        load_encoder("clip", tmp_path / "nope")


def test_imagebind_missing_package_or_checkpoint_names_env_and_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imagebind", None)  # import fails as when the env is absent
    with pytest.raises(ImportError, match="envs/imagebind.yaml"):
        load_encoder("imagebind", checkpoint=tmp_path / "imagebind_huge.pth")


def _fake_imagebind(monkeypatch, dim=1024):
    """A stand-in for the upstream API surface the wrapper uses (module layout and call signatures)."""
    calls = {}

    class ModalityType:
        VISION, TEXT = "vision", "text"

    class FakeModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(3, dim)

        def forward(self, inputs):
            out = {}
            for k, v in inputs.items():
                calls.setdefault(k, 0)
                calls[k] += 1
                feat = v.float().flatten(1)[:, :3] if k == "vision" else v.float()[:, :3]
                out[k] = self.w(feat)
            return out

    def imagebind_huge(pretrained=False):
        calls["pretrained"] = pretrained
        return FakeModel()

    def load_and_transform_vision_data(paths, device):
        return torch.stack([torch.rand(3, 4, 4) for _ in paths])

    def load_and_transform_text(texts, device):
        return torch.tensor([[len(t), 1, 2] for t in texts])

    pkg = types.ModuleType("imagebind")
    data = types.ModuleType("imagebind.data")
    data.load_and_transform_vision_data = load_and_transform_vision_data
    data.load_and_transform_text = load_and_transform_text
    models = types.ModuleType("imagebind.models")
    ib_model = types.ModuleType("imagebind.models.imagebind_model")
    ib_model.imagebind_huge, ib_model.ModalityType = imagebind_huge, ModalityType
    models.imagebind_model = ib_model
    pkg.data, pkg.models = data, models
    for name, mod in [("imagebind", pkg), ("imagebind.data", data), ("imagebind.models", models),
                      ("imagebind.models.imagebind_model", ib_model)]:
        monkeypatch.setitem(sys.modules, name, mod)
    return FakeModel, calls


def test_imagebind_wrapper_against_the_upstream_api_surface(world, tmp_path, monkeypatch):
    FakeModel, calls = _fake_imagebind(monkeypatch)
    with pytest.raises(FileNotFoundError, match="emr.encoder.checkpoint"):
        load_encoder("imagebind", checkpoint=tmp_path / "missing.pth")
    ckpt = tmp_path / "imagebind_huge.pth"
    torch.save(FakeModel().state_dict(), ckpt)
    enc = load_encoder("imagebind", checkpoint=ckpt, batch_size=2)
    assert calls["pretrained"] is False  # never downloads
    x = enc.encode_images(_images(world)[:3])
    t = enc.encode_texts(["a", "bb", "ccc"])
    assert x.shape == (3, 1024) and t.shape == (3, 1024) and enc.dim == 1024
    assert calls["vision"] == 2 and calls["text"] == 2  # batched by batch_size


def test_fingerprint_changes_when_weights_change(world, tmp_path):
    import os
    import shutil

    clip = tmp_path / "clip"
    shutil.copytree(world["clip"], clip)
    before = load_encoder("clip", clip).fingerprint
    w = clip / "model.safetensors"
    os.utime(w, ns=(w.stat().st_atime_ns, w.stat().st_mtime_ns + 10**9))  # retrained in place
    assert load_encoder("clip", clip).fingerprint != before  # so stale shards are re-encoded, not reused
