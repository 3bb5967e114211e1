"""The toy VisDial renderer: schema, determinism, and answers that follow from the image.
Run: pytest tests/test_toy_visdial.py"""
from __future__ import annotations

import json
import random

import numpy as np
from PIL import Image

from mmemory.toy_visdial import COLORS, NUMBERS, build_toy_visdial, caption, qa_pool, render, sample_scene
from mmemory.visdial import load_visdial


def test_deterministic(tmp_path, toy_root):
    build_toy_visdial(tmp_path, n_train=12, n_val=4, image_size=48, seed=7)
    for name in ("visdial_1.0_train.json", "visdial_1.0_val.json", "visdial_1.0_val_dense_annotations.json"):
        assert (tmp_path / name).read_text() == (toy_root / name).read_text()
    a = sorted((tmp_path / "images" / "train").glob("*.png"))[0]
    b = toy_root / "images" / "train" / a.name
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


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
    for split in ("train", "val"):
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
