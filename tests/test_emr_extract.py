"""extract_embeddings: `pytest tests/test_emr_extract.py` (offline; tiny CLIP, toy images, one corrupt image)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from _emr_fixtures import make_toy_world
from mmemory.emr.data import dialog_records, extract_split, image_key, question_key
from mmemory.encoders import ImageError, load_encoder
from mmemory.shards import ShardedEmbeddings
from mmemory.visdial import load_visdial


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_toy_world(tmp_path_factory.mktemp("extract"), n_train=3, n_val=3)


def _with_corrupt_image(world, tmp_path):
    """A copy of the val split whose second image is truncated."""
    data = json.loads(open(world["val"]).read())
    d = data["data"]["dialogs"][1]
    bad = tmp_path / "bad.png"
    shutil.copy(d["image_path"], bad)
    bad.write_bytes(bad.read_bytes()[:40])
    d["image_path"] = str(bad)
    path = tmp_path / "val.json"
    path.write_text(json.dumps(data))
    return str(path), d["image_id"]


def test_one_embedding_per_image_and_per_round_question(world, tmp_path):
    enc = load_encoder("clip", world["clip"])
    summary = extract_split(world["val"], tmp_path / "emb", enc, shard_size=7)
    split = load_visdial(world["val"])
    assert summary["n_images"] == 3 and summary["n_questions"] == 30 and summary["n_shards"] == 5
    store = ShardedEmbeddings(tmp_path / "emb")
    d = split.dialogs[0]
    img = store.get(image_key(d["image_id"]))
    np.testing.assert_allclose(img, enc.encode_images([d["image_path"]])[0], atol=1e-5)
    q3 = store.get(question_key(d["image_id"], 3))
    np.testing.assert_allclose(q3, enc.encode_texts([split.question(d["dialog"][2])])[0], atol=1e-5)


def test_corrupt_image_stops_with_its_name(world, tmp_path):
    val, _ = _with_corrupt_image(world, tmp_path)
    enc = load_encoder("clip", world["clip"])
    with pytest.raises(ImageError, match="bad.png"):
        extract_split(val, tmp_path / "emb", enc, shard_size=64, on_bad_image="error")


def test_corrupt_image_quarantined_counted_and_its_dialogue_skipped(world, tmp_path):
    val, bad_id = _with_corrupt_image(world, tmp_path)
    enc = load_encoder("clip", world["clip"])
    summary = extract_split(val, tmp_path / "emb", enc, shard_size=64, on_bad_image="quarantine")
    assert summary["n_quarantined"] == 1 and summary["n_items"] == 32
    store = ShardedEmbeddings(tmp_path / "emb")
    assert image_key(bad_id) in store.quarantined
    recs, skipped = dialog_records(load_visdial(val), store)
    assert skipped == 1 and bad_id not in {r.image_id for r in recs} and len(recs) == 2


def test_bad_policy_name_is_rejected(world, tmp_path):
    with pytest.raises(ValueError, match="on_bad_image"):
        extract_split(world["val"], tmp_path, load_encoder("clip", world["clip"]), 8, on_bad_image="zeros")
