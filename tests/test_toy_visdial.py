"""The toy VisDial renderer: schema, determinism, and answers that follow from the image.
Run: pytest tests/test_toy_visdial.py"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from mmemory.toy.visdial import (COLORS, NUMBERS, build_toy_visdial, caption, qa_pool, render, sample_scene,
                                 scene_split)
from mmemory.visdial import load_visdial


def test_deterministic(tmp_path, toy_root):
    build_toy_visdial(tmp_path, n_train=12, n_val=4, image_size=48, seed=7, memory_share=0.0)
    for name in ("visdial_1.0_train.json", "visdial_1.0_val.json", "visdial_1.0_test.json",
                 "visdial_1.0_val_dense_annotations.json", "visdial_1.0_test_dense_annotations.json"):
        assert (tmp_path / name).read_text() == (toy_root / name).read_text()
    a = sorted((tmp_path / "images" / "train").glob("*.png"))[0]
    b = toy_root / "images" / "train" / a.name
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def _content(root: Path, split: str) -> tuple[set, set]:
    """(image file hashes, (image hash, question, answer) triples) of one rendered split."""
    data = json.loads((root / f"visdial_1.0_{split}.json").read_text())["data"]
    images, triples = set(), set()
    for d in data["dialogs"]:
        digest = hashlib.md5((root / "images" / split / f"toy_{split}_{d['image_id']:012d}.png").read_bytes()).digest()
        images.add(digest)
        triples |= {(digest, data["questions"][r["question"]], data["answers"][r["answer"]]) for r in d["dialog"]}
    return images, triples


def test_splits_are_disjoint_by_content_not_only_by_id(tmp_path):
    # the default sizes: before the scene split, 16 of 80 val images were byte-identical to a train image
    build_toy_visdial(tmp_path, n_train=400, n_val=80, n_test=80, image_size=32, seed=0, memory_share=0.0)
    content = {s: _content(tmp_path, s) for s in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not content[a][0] & content[b][0], f"{a} and {b} share an image"
        assert not content[a][1] & content[b][1], f"{a} and {b} share an (image, question, answer)"
    assert all(len(content[s][0]) > 40 for s in ("val", "test"))  # varied, not a handful of scenes


def test_scene_split_is_a_function_of_the_scene_and_the_seed():
    rng = random.Random(0)
    shares = {"train": 400, "val": 80, "test": 80}
    scenes = [sample_scene(rng, 3) for _ in range(2000)]
    got = [scene_split(o, shares, 0) for o in scenes]
    assert got == [scene_split(list(reversed(o)), shares, 0) for o in scenes]  # object order does not matter
    assert 0.6 < got.count("train") / len(got) < 0.8  # in proportion to the split sizes
    assert got != [scene_split(o, shares, 1) for o in scenes]


def test_schema_and_disjoint_splits(toy_root):
    train = json.loads((toy_root / "visdial_1.0_train.json").read_text())
    assert set(train) == {"version", "split", "data"} and set(train["data"]) == {"questions", "answers", "dialogs"}
    val = json.loads((toy_root / "visdial_1.0_val.json").read_text())
    ids = lambda v: {d["image_id"] for d in v["data"]["dialogs"]}  # noqa: E731
    assert not ids(train) & ids(val)
    dense = json.loads((toy_root / "visdial_1.0_val_dense_annotations.json").read_text())
    split = {d["image_id"]: d for d in val["data"]["dialogs"]}
    for a in dense:
        rnd = split[a["image_id"]]["dialog"][a["round_id"] - 1]
        assert len(a["gt_relevance"]) == 100 and a["gt_relevance"][rnd["gt_index"]] == 1.0


def _colours_in(image: Image.Image) -> set[str]:
    px = {tuple(p) for p in np.asarray(image.convert("RGB")).reshape(-1, 3)}
    return {name for name, rgb in COLORS.items() if rgb in px}


def test_answers_follow_from_the_rendered_image():
    rng = random.Random(0)
    for _ in range(50):
        objs = sample_scene(rng, 3)
        seen = _colours_in(render(objs, 64))
        for q, a in qa_pool(objs, rng):
            if q == "how many shapes are there?":
                assert a == NUMBERS[len(objs)]
            if q.startswith("is anything "):
                colour = q.removeprefix("is anything ").rstrip("?")
                assert (a != "no") == (colour in seen)


def test_caption_names_every_object_and_its_place():
    # the toy CLIP and the bridge's captioning pre-training learn from captions: "where is ..." needs places in them
    rng = random.Random(1)
    for _ in range(50):
        objs = sample_scene(rng, 3)
        text = caption(objs)
        assert text.startswith("a picture of ")
        for o in objs:
            assert f"a {o.color} {o.shape} {o.where}" in text
    assert caption(sample_scene(random.Random(3), 1)).count(" a ") == 1


def test_dialogues_read_through_the_real_reader(toy_root):
    split = load_visdial(toy_root / "visdial_1.0_val.json")
    d = split.dialogs[0]
    assert split.question(d["dialog"][0]).endswith("?")
    assert split.answer(d["dialog"][0]) in split.answers


def test_no_question_is_asked_twice_in_a_dialogue(toy_root):
    for split in ("train", "val", "test"):
        data = json.loads((toy_root / f"visdial_1.0_{split}.json").read_text())["data"]
        for d in data["dialogs"]:
            qs = [r["question"] for r in d["dialog"]]
            assert len(set(qs)) == len(qs), (split, d["image_id"], qs)


def test_question_pool_has_unique_questions_and_enough_for_ten_rounds():
    rng = random.Random(1)
    for _ in range(500):
        pool = qa_pool(sample_scene(rng, 3), rng)
        questions = [q for q, _ in pool]
        assert len(set(questions)) == len(questions) >= 10
