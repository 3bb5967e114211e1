"""prepare_data: three splits, disjoint by content (ids, image bytes, image+question+answer), on a miniature
VisDial v1.0.  Run: pytest tests/test_prepare.py"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _visdial_fixtures import build_mini_visdial, dense, dialog, image_file, out_paths, write_image, write_split

from mmemory.prepare import carve_val, prepare_data
from mmemory.visdial import REASONS, VisDialError, load_visdial, validate_visdial


def _load(path: Path):
    return json.loads(Path(path).read_text())


@pytest.fixture
def mini(tmp_path):
    """The miniature plus a val file of its own (ids 200, 201; images under val_images/, dense annotations)."""
    m = build_mini_visdial(tmp_path / "mini")
    root = tmp_path / "mini"
    val_dialogs = [dialog(200), dialog(201)]
    for i in (200, 201):
        write_image(root / "val_images" / f"toy_val_{i:012d}.png", i)
    m["val_json"] = write_split(root / "our_val.json", "val", val_dialogs)
    m["val_images"] = root / "val_images"
    m["val_dense"] = root / "our_val_dense.json"
    m["val_dense"].write_text(json.dumps(dense(val_dialogs)))
    return m


def _run(m, out, **kw):
    args = dict(val_json=m["val_json"], val_images=m["val_images"], val_dense=m["val_dense"],
                test_dense=m["test_dense"], n_options=4)
    args.update(kw)
    return prepare_data(m["train_json"], m["train_dirs"], m["test_json"], m["test_images"], out, **args)


def test_three_clean_splits_are_written_with_images_and_dense(mini, tmp_path):
    out = out_paths(tmp_path / "out")
    metrics = _run(mini, out)
    assert metrics["train_dialogs"] == 6 and metrics["val_dialogs"] == 2 and metrics["test_dialogs"] == 3
    assert metrics["val_dense_annotations"] == 2 and metrics["test_dense_annotations"] == 3
    assert metrics["content_overlap"] == 0 and metrics["dropped_items"] == 0
    assert _load(out["metrics"]) == metrics
    ids = {}
    for name in ("train", "val", "test"):
        split = load_visdial(out[name])
        assert all(Path(d["image_path"]).is_file() for d in split.dialogs)
        ids[name] = {d["image_id"] for d in split.dialogs}
    assert ids == {"train": {9, 11, 25, 42, 57, 73}, "val": {200, 201}, "test": {100, 101, 102}}
    assert [a["image_id"] for a in _load(out["test_dense"])] == [100, 101, 102]
    assert [a["image_id"] for a in _load(out["val_dense"])] == [200, 201]
    report = _load(out["report"])
    assert report["content_overlap"] == 0 and report["reasons"] == {} and report["items"] == []
    assert report["kept"] == {"train": 6, "val": 2, "test": 3, "val_dense": 2, "test_dense": 3}


def test_a_coco_root_works_as_the_train_image_folder(mini, tmp_path):
    out = out_paths(tmp_path / "out")
    metrics = prepare_data(str(mini["train_json"]), str(mini["coco"]), str(mini["test_json"]),
                           str(mini["test_images"]), out, val_from_train=2, n_options=4)
    assert metrics["train_dialogs"] + metrics["val_dialogs"] == 6


def test_val_carved_from_train_is_seeded_and_disjoint(mini, tmp_path):
    out = out_paths(tmp_path / "a")
    metrics = _run(mini, out, val_json=None, val_images=None, val_dense=None, val_from_train=2, seed=3)
    train, val = load_visdial(out["train"]), load_visdial(out["val"])
    tr, va = {d["image_id"] for d in train.dialogs}, {d["image_id"] for d in val.dialogs}
    assert len(va) == 2 and len(tr) == 4 and not tr & va and tr | va == {9, 11, 25, 42, 57, 73}
    assert metrics["val_dialogs"] == 2 and metrics["val_from_train"] == 2
    assert _load(out["val_dense"]) == []
    assert all(Path(d["image_path"]).is_file() for d in val.dialogs)
    again = out_paths(tmp_path / "b")
    _run(mini, again, val_json=None, val_images=None, val_dense=None, val_from_train=2, seed=3)
    assert _load(again["val"]) == _load(out["val"])  # same seed, same carve
    carves = set()
    for seed in range(8):
        split = validate_visdial(mini["train_json"], mini["train_dirs"], n_options=4)
        carves.add(tuple(d["image_id"] for d in carve_val(split, 2, seed)[1].dialogs))
    assert len(carves) > 1  # the seed matters


@pytest.mark.parametrize("n,match", [(None, "set data.visdial.val_json, or data.visdial.val_from_train"),
                                     (6, "must be an integer in 1..5"), (0, "must be an integer in 1..5")])
def test_val_from_train_must_be_given_and_smaller_than_train(mini, tmp_path, n, match):
    with pytest.raises(VisDialError, match=match):
        _run(mini, out_paths(tmp_path), val_json=None, val_images=None, val_dense=None, val_from_train=n)


def test_carving_keeps_byte_identical_train_images_on_one_side(mini, tmp_path):
    """Two train ids with the same picture must never be split between train and the carved val."""
    src = mini["coco"] / "train2014" / "COCO_train2014_000000000009.jpg"
    (mini["coco"] / "val2014" / "COCO_val2014_000000000057.jpg").write_bytes(src.read_bytes())
    for seed in range(6):
        out = out_paths(tmp_path / str(seed))
        _run(mini, out, val_json=None, val_images=None, val_dense=None, val_from_train=3, seed=seed)
        val = {d["image_id"] for d in _load(out["val"])["data"]["dialogs"]}
        assert len(val) == 3 and ({9, 57} <= val or not {9, 57} & val)


def _copy_train_image_into_val(mini, train_id: int, qa_too: bool):
    """Val gets a dialogue for image 300 whose file is a byte-identical copy of train image `train_id`; with
    `qa_too` it also repeats that train dialogue's rounds."""
    src = image_file(mini["coco"].parent, "val2014" if train_id in (42, 57, 73) else "train2014", train_id)
    shutil.copy(src, mini["val_images"] / "toy_val_000000000300.png")  # another name, another id, same bytes
    leaked = dialog(300, shift=0 if qa_too else 20)  # shift 20: no (question, answer) pair of dialogue 42
    if qa_too:
        leaked["dialog"] = dialog(train_id)["dialog"]
    val = _load(mini["val_json"])
    val["data"]["dialogs"].append(leaked)
    write_split(mini["val_json"], "val", val["data"]["dialogs"])
    return src


@pytest.mark.parametrize("qa_too,reason", [(False, "image content shared with another split"),
                                           (True, "image, question and answer shared with another split")])
def test_byte_identical_image_under_another_id_is_caught(mini, tmp_path, qa_too, reason):
    src = _copy_train_image_into_val(mini, 42, qa_too)
    with pytest.raises(VisDialError) as err:
        _run(mini, out_paths(tmp_path / "strict"))
    msg = str(err.value)
    assert str(mini["val_json"]) in msg and str(mini["train_json"]) in msg  # both files
    assert "image_id=300" in msg and "image_id=42" in msg and "dialog 2 " in msg and "dialog 3 " in msg
    assert str(src) in msg and "toy_val_000000000300.png" in msg  # both image files
    assert "byte-identical" in msg and "data.strict: false" in msg
    if qa_too:
        assert "repeats a round" in msg

    out = out_paths(tmp_path / "lenient")
    metrics = _run(mini, out, strict=False)
    assert metrics["content_overlap"] == 1 and metrics["val_dialogs"] == 2 and metrics["train_dialogs"] == 6
    assert 300 not in {d["image_id"] for d in _load(out["val"])["data"]["dialogs"]}
    assert 42 in {d["image_id"] for d in _load(out["train"])["data"]["dialogs"]}  # the earlier split keeps it
    report = _load(out["report"])
    assert report["reasons"] == {reason: 1} and reason in REASONS
    (item,) = report["items"]
    assert item["split"] == "val" and item["image_id"] == 300 and item["reason"] == reason
    assert report["dropped"]["val"] == 1 and report["content_overlap"] == 1


def test_shared_image_id_across_splits(mini, tmp_path):
    test = _load(mini["test_json"])
    test["data"]["dialogs"][0] = dialog(11)  # image_id 11 is a train dialogue too
    write_split(mini["test_json"], "val", test["data"]["dialogs"])
    mini["test_dense"].write_text(json.dumps(dense(test["data"]["dialogs"])))
    write_image(image_file(mini["coco"].parent, "val2018", 11), 11)
    with pytest.raises(VisDialError, match="image_id 11 is also train split"):
        _run(mini, out_paths(tmp_path / "s"))
    out = out_paths(tmp_path / "l")
    metrics = _run(mini, out, strict=False)
    assert metrics["test_dialogs"] == 2 and metrics["content_overlap"] == 1
    report = _load(out["report"])
    # the test dense entry of the dropped dialogue goes too, and is counted
    assert report["reasons"] == {"image_id shared with another split": 1,
                                 "dense annotation for an unknown dialogue": 1}
    assert report["dropped"]["test"] == 1 and report["dropped"]["test_dense"] == 1
    assert metrics["test_dense_annotations"] == 2


def test_report_groups_the_same_kind_of_problem_across_dialogues_and_splits(mini, tmp_path):
    train = [dialog(i) for i in (9, 11, 25, 42, 57, 73)]
    train[0]["dialog"][0]["question"] = 999
    train[4]["dialog"][1]["answer"] = -3
    del train[2]["dialog"][0]["gt_index"]
    write_split(mini["train_json"], "train", train)
    val = _load(mini["val_json"])
    val["data"]["dialogs"][1]["dialog"][2]["gt_index"] = 50
    write_split(mini["val_json"], "val", val["data"]["dialogs"])
    out = out_paths(tmp_path)
    metrics = _run(mini, out, strict=False, val_dense=None)
    report = _load(out["report"])
    assert report["reasons"] == {"index out of bounds": 3, "round missing gt_index": 1}
    assert sorted((i["split"], i["image_id"]) for i in report["items"]) == [
        ("train", 9), ("train", 25), ("train", 57), ("val", 201)]
    assert all(i["reason"] in REASONS and i["problem"] for i in report["items"])
    assert metrics["dropped_items"] == 4 and metrics["train_dialogs"] == 3 and metrics["content_overlap"] == 0


def test_max_dialogs_skips_the_dense_entries_it_cut(mini, tmp_path):
    metrics = _run(mini, out_paths(tmp_path), max_dialogs=2)  # strict: the cut test dialogue's dense entry is no error
    assert metrics["test_dialogs"] == 2 and metrics["test_dense_annotations"] == 2 and metrics["dropped_items"] == 0


def test_out_must_name_every_output(mini, tmp_path):
    out = out_paths(tmp_path)
    del out["test_dense"]
    with pytest.raises(ValueError, match="test_dense"):
        _run(mini, out)


def test_a_val_file_wins_over_val_from_train(mini, tmp_path):
    """The config may keep val_from_train set (for real data) while the toy data brings its own val file."""
    metrics = _run(mini, out_paths(tmp_path), val_from_train=3)
    assert metrics["val_dialogs"] == 2 and metrics["train_dialogs"] == 6 and metrics["val_from_train"] == 0


def test_val_dense_without_val_json_is_refused(mini, tmp_path):
    with pytest.raises(VisDialError, match="val_dense is set but val_json is not"):
        _run(mini, out_paths(tmp_path), val_json=None, val_from_train=2)
