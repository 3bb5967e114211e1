"""VisDial reader/validator on a corpus of broken files and on a miniature of the real layout.
Run: pytest tests/test_visdial.py"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _visdial_fixtures import build_mini_visdial, dialog, image_file, write_image, write_split

from mmemory.visdial import (REASONS, VisDialError, index_images, load_visdial, read_json, validate_dense,
                             validate_visdial)


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _save(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))


def test_valid_toy_split_passes_and_resolves_images(toy_root):
    split = validate_visdial(toy_root / "visdial_1.0_train.json", toy_root / "images" / "train")
    assert len(split.dialogs) == 12 and not split.problems
    for d in split.dialogs:
        assert Path(d["image_path"]).exists()
        assert int(Path(d["image_path"]).stem.split("_")[-1]) == d["image_id"]
        assert len(d["dialog"]) == 10
        for rnd in d["dialog"]:
            assert rnd["answer_options"][rnd["gt_index"]] == rnd["answer"]


# Each case breaks the first dialogue (or the file) in one way and names the words its error must contain.
def _q_out(v):
    v["data"]["dialogs"][0]["dialog"][0]["question"] = 10_000


def _a_out(v):
    v["data"]["dialogs"][0]["dialog"][1]["answer"] = -1


def _opts_len(v):
    v["data"]["dialogs"][0]["dialog"][2]["answer_options"].pop()


def _opts_dup(v):
    opts = v["data"]["dialogs"][0]["dialog"][0]["answer_options"]
    j = 0 if v["data"]["dialogs"][0]["dialog"][0]["gt_index"] != 0 else 1
    opts[j] = opts[j + 1] if j + 1 != v["data"]["dialogs"][0]["dialog"][0]["gt_index"] else opts[j + 2]


def _opts_out(v):
    v["data"]["dialogs"][0]["dialog"][0]["answer_options"][-1] = 99_999
    v["data"]["dialogs"][0]["dialog"][0]["gt_index"] = 0
    v["data"]["dialogs"][0]["dialog"][0]["answer"] = v["data"]["dialogs"][0]["dialog"][0]["answer_options"][0]


def _gt_out(v):
    v["data"]["dialogs"][0]["dialog"][0]["gt_index"] = 100


def _gt_mismatch(v):
    rnd = v["data"]["dialogs"][0]["dialog"][0]
    rnd["gt_index"] = (rnd["gt_index"] + 1) % 100


def _dup_id(v):
    v["data"]["dialogs"][0]["image_id"] = v["data"]["dialogs"][1]["image_id"]


def _empty(v):
    v["data"]["dialogs"][0]["dialog"] = []


def _bad_id(v):
    v["data"]["dialogs"][0]["image_id"] = "abc"


def _caption(v):
    v["data"]["dialogs"][0]["caption"] = 5


def _no(key):
    def mutate(v):
        del v["data"]["dialogs"][0]["dialog"][2][key]
    return mutate


# case -> (mutation, words its error must contain, its reason label in data_report.json)
CASES = {
    "question index out of bounds": (_q_out, "question index 10000 is out of bounds", "index out of bounds"),
    "answer index out of bounds": (_a_out, "answer index -1 is out of bounds", "index out of bounds"),
    "wrong number of options": (_opts_len, "99 answer_options, expected 100", "wrong number of answer_options"),
    "duplicate options": (_opts_dup, "answer_options contain duplicates", "duplicate answer_options"),
    "option index out of bounds": (_opts_out, "answer_options hold indices out of bounds", "index out of bounds"),
    "gt_index out of bounds": (_gt_out, "gt_index 100 is out of bounds", "index out of bounds"),
    "gt_index points elsewhere": (_gt_mismatch, "differs from answer", "gt_index does not match answer"),
    "duplicate image id": (_dup_id, "duplicate image_id", "duplicate image_id"),
    "empty dialogue": (_empty, "empty dialogue", "empty dialogue"),
    "non-integer image id": (_bad_id, "is not an integer", "image_id not an integer"),
    "caption not a string": (_caption, "caption is not a string", "caption not a string"),
    "round without answer": (_no("answer"), "round 3 has no 'answer'", "round missing answer"),
    "round without answer_options": (_no("answer_options"), "round 3 has no 'answer_options'",
                                     "round missing answer_options"),
    "round without gt_index": (_no("gt_index"), "round 3 has no 'gt_index'", "round missing gt_index"),
}


def _break(toy_copy: Path, case: str) -> tuple[Path, str]:
    """Apply one CASES mutation to the train file; returns (its path, the words its error must contain)."""
    mutate, expected, _ = CASES[case]
    path = toy_copy / "visdial_1.0_train.json"
    v = _load(path)
    mutate(v)
    _save(path, v)
    return path, expected


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_broken_dialog_gives_its_own_clear_error(toy_copy, case):
    path, expected = _break(toy_copy, case)
    with pytest.raises(VisDialError) as err:
        validate_visdial(path, toy_copy / "images" / "train")
    msg = str(err.value)
    assert expected in msg
    assert str(path) in msg  # names the file
    bad_index = 1 if case == "duplicate image id" else 0
    assert f"dialog {bad_index} " in msg  # names the dialogue
    assert "data.strict: false" in msg  # names the fix


@pytest.mark.parametrize("case", sorted(CASES))
def test_lenient_mode_drops_and_counts_instead(toy_copy, case):
    path, expected = _break(toy_copy, case)
    split = validate_visdial(path, toy_copy / "images" / "train", strict=False)
    assert len(split.problems) == 1 and expected in split.problems[0].problem
    assert split.problems[0].reason == CASES[case][2] and CASES[case][2] in REASONS
    assert len(split.dialogs) == 11  # nothing else is lost, nothing is filled in


def test_missing_and_corrupt_images(toy_copy):
    images = sorted((toy_copy / "images" / "train").glob("*.png"))
    images[0].unlink()
    images[1].write_bytes(b"not a png at all")
    path = toy_copy / "visdial_1.0_train.json"
    with pytest.raises(VisDialError, match="no image file for image_id"):
        validate_visdial(path, toy_copy / "images" / "train")
    split = validate_visdial(path, toy_copy / "images" / "train", strict=False)
    reasons = sorted(p.problem for p in split.problems)
    assert len(reasons) == 2
    assert any("corrupt or unreadable" in r for r in reasons) and any("no image file" in r for r in reasons)
    assert sorted(p.reason for p in split.problems) == ["corrupt image", "missing image"]


@pytest.mark.parametrize("text,expected", [
    ("{not json", "not valid JSON (line 1"),
    ("[]", "top level must be an object"),
    ('{"data": {"questions": [], "answers": []}}', "data.dialogs is missing"),
    ('{"data": {"questions": [1], "answers": [], "dialogs": []}}', "data.questions[0] is not a string"),
])
def test_broken_files(tmp_path, text, expected):
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(VisDialError) as err:
        validate_visdial(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_missing_file_names_config_key(tmp_path):
    with pytest.raises(VisDialError, match="file not found.*data.visdial"):
        validate_visdial(tmp_path / "nope.json")


def test_dense_annotation_errors(toy_copy):
    split = validate_visdial(toy_copy / "visdial_1.0_val.json", toy_copy / "images" / "val")
    dense_path = toy_copy / "visdial_1.0_val_dense_annotations.json"
    kept, problems = validate_dense(dense_path, split)
    assert len(kept) == 4 and not problems
    dense = _load(dense_path)
    dense[0]["round_id"] = 0
    dense[1]["gt_relevance"] = dense[1]["gt_relevance"][:10]
    dense[2]["image_id"] = 424242
    _save(dense_path, dense)
    with pytest.raises(VisDialError, match="round_id 0 is outside 1..10"):
        validate_dense(dense_path, split)
    kept, problems = validate_dense(dense_path, split, strict=False)
    assert len(kept) == 1 and len(problems) == 3
    assert sorted(p.reason for p in problems) == ["bad dense annotation", "bad dense annotation",
                                                  "dense annotation for an unknown dialogue"]


# --- real VisDial v1.0 layout: train images in two COCO folders ---------------------------------------------------

@pytest.fixture
def mini(tmp_path):
    return build_mini_visdial(tmp_path / "mini")


def test_mini_visdial_really_spans_two_coco_folders(mini):
    names = {p.parent.name: p.name for p in mini["coco"].rglob("*.jpg")}
    assert set(names) == {"train2014", "val2014"}
    assert (mini["coco"] / "train2014" / "COCO_train2014_000000000009.jpg").is_file()
    assert (mini["coco"] / "val2014" / "COCO_val2014_000000000042.jpg").is_file()


@pytest.mark.parametrize("images", ["list", "root"])
def test_strict_mode_loads_train_across_coco_folders(mini, images):
    where = mini["train_dirs"] if images == "list" else mini["coco"]
    split = validate_visdial(mini["train_json"], where, n_options=4)
    assert [d["image_id"] for d in split.dialogs] == [9, 11, 25, 42, 57, 73] and not split.problems
    folders = {d["image_id"]: Path(d["image_path"]).parent.name for d in split.dialogs}
    assert folders == {9: "train2014", 11: "train2014", 25: "train2014", 42: "val2014", 57: "val2014", 73: "val2014"}
    assert len(set(split.image_hashes.values())) == 6  # every image read and hashed


def test_one_coco_folder_is_not_enough_and_says_why(mini):
    with pytest.raises(VisDialError) as err:
        validate_visdial(mini["train_json"], mini["train_dirs"][0], n_options=4)
    msg = str(err.value)
    assert "dialog 3 (image_id=42)" in msg and "no image file for image_id 42" in msg
    assert "val2014" in msg and "data.visdial.*_images" in msg
    split = validate_visdial(mini["train_json"], str(mini["train_dirs"][0]), n_options=4, strict=False)
    assert [d["image_id"] for d in split.dialogs] == [9, 11, 25]
    assert [p.reason for p in split.problems] == ["missing image"] * 3


def test_same_id_with_different_bytes_in_two_folders_is_an_error_naming_both(mini):
    other = image_file(mini["coco"].parent, "val2014", 9)  # COCO_val2014_000000000009.jpg, a different picture
    write_image(other, 1234)
    first = mini["coco"] / "train2014" / "COCO_train2014_000000000009.jpg"
    with pytest.raises(VisDialError) as err:
        validate_visdial(mini["train_json"], mini["coco"], n_options=4)
    msg = str(err.value)
    assert "image_id 9 names different files" in msg and str(first) in msg and str(other) in msg
    split = validate_visdial(mini["train_json"], mini["train_dirs"], n_options=4, strict=False)
    assert [(p.image_id, p.reason) for p in split.problems] == [(9, "conflicting image files")]
    assert len(split.dialogs) == 5


def test_identical_copies_of_an_image_in_two_folders_are_fine(mini):
    first = mini["coco"] / "train2014" / "COCO_train2014_000000000009.jpg"
    copy = mini["coco"] / "val2014" / "COCO_val2014_000000000009.jpg"
    copy.write_bytes(first.read_bytes())
    index = index_images(mini["coco"])
    assert index[9] == first and not index.conflicts
    split = validate_visdial(mini["train_json"], [mini["train_dirs"][0], mini["train_dirs"][1], mini["coco"]],
                             n_options=4)
    assert len(split.dialogs) == 6


def test_image_folders_must_exist_and_hold_images(mini, tmp_path):
    with pytest.raises(VisDialError, match="image directory not found"):
        index_images([mini["train_dirs"][0], tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(VisDialError, match="no image files"):
        index_images(tmp_path / "empty")
    with pytest.raises(VisDialError, match="empty list"):
        index_images([])


# --- undecodable bytes --------------------------------------------------------------------------------------------

def test_non_utf8_byte_gives_a_clean_error_with_offset_line_and_fix(mini):
    path = mini["train_json"]
    text = json.dumps({"version": "1.0", "split": "train", "data": {"questions": ["q?"], "answers": ["a"],
                       "dialogs": [dialog(9)]}}, indent=1)
    raw = text.encode().replace(b"picture number 9", b"caf\xe9 picture")  # a latin-1 byte in the caption
    path.write_bytes(raw)
    offset = raw.index(b"\xe9")
    line = raw[:offset].count(b"\n") + 1
    assert line > 1
    for call in (lambda: read_json(path), lambda: validate_visdial(path)):
        with pytest.raises(VisDialError) as err:
            call()
        msg = str(err.value)
        assert str(path) in msg and f"byte offset {offset}" in msg
        assert f"line {line}," in msg and "0xe9" in msg
        assert "re-save the file as UTF-8" in msg
        assert not isinstance(err.value, UnicodeDecodeError)


def test_utf8_with_bom_and_non_ascii_text_loads(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"caption": "café"}, ensure_ascii=False).encode())
    assert read_json(path) == {"caption": "café"}


# --- required round keys ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["answer", "answer_options", "gt_index"])
def test_every_round_needs_answer_options_and_gt_index(mini, key):
    dialogs = [dialog(i) for i in (9, 11, 25)]
    del dialogs[1]["dialog"][2][key]
    path = write_split(mini["train_json"], "train", dialogs)
    with pytest.raises(VisDialError) as err:
        validate_visdial(path, mini["coco"], n_options=4)
    msg = str(err.value)
    assert f"dialog 1 (image_id=11): round 3 has no '{key}'" in msg and "data.strict: false" in msg
    split = validate_visdial(path, mini["coco"], n_options=4, strict=False)
    assert [d["image_id"] for d in split.dialogs] == [9, 25]
    assert [(p.dialog_index, p.reason) for p in split.problems] == [(1, f"round missing {key}")]


def test_load_visdial_still_reads_files_without_answer_options(tmp_path):
    """load_visdial (prepared files, scoring references) keeps accepting rounds with question + answer only."""
    d = {"image_id": 5, "caption": "c", "dialog": [{"question": 0, "answer": 0}, {"question": 0}]}
    path = write_split(tmp_path / "v.json", "val", [d])
    assert load_visdial(path).dialogs[0]["image_id"] == 5
    with pytest.raises(VisDialError, match="round 1 has no 'answer_options'"):
        validate_visdial(path)


def test_same_kind_of_problem_gets_one_reason_whatever_its_numbers(mini):
    dialogs = [dialog(i) for i in (9, 11, 25, 42)]
    dialogs[0]["dialog"][0]["question"] = 999
    dialogs[2]["dialog"][1]["answer_options"][0] = 12345
    dialogs[3]["dialog"][2]["gt_index"] = 7
    path = write_split(mini["train_json"], "train", dialogs)
    split = validate_visdial(path, mini["coco"], n_options=4, strict=False)
    assert [p.reason for p in split.problems] == ["index out of bounds"] * 3
    assert len({p.problem for p in split.problems}) == 3  # the details still differ
