"""VisDial reader/validator and prepare_data on a corpus of broken files.  Run: pytest tests/test_visdial.py"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmemory.prepare import prepare_data
from mmemory.visdial import VisDialError, load_visdial, validate_dense, validate_visdial


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


CASES = {
    "question index out of bounds": (_q_out, "question index 10000 is out of bounds"),
    "answer index out of bounds": (_a_out, "answer index -1 is out of bounds"),
    "wrong number of options": (_opts_len, "99 answer_options, expected 100"),
    "duplicate options": (_opts_dup, "answer_options contain duplicates"),
    "option index out of bounds": (_opts_out, "answer_options hold indices out of bounds"),
    "gt_index out of bounds": (_gt_out, "gt_index 100 is out of bounds"),
    "gt_index points elsewhere": (_gt_mismatch, "differs from answer"),
    "duplicate image id": (_dup_id, "duplicate image_id"),
    "empty dialogue": (_empty, "empty dialogue"),
    "non-integer image id": (_bad_id, "is not an integer"),
    "caption not a string": (_caption, "caption is not a string"),
}


def _break(toy_copy: Path, case: str) -> tuple[Path, str]:
    """Apply one CASES mutation to the train file; returns (its path, the words its error must contain)."""
    mutate, expected = CASES[case]
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


def test_prepare_data_report_counts_every_dropped_item(toy_copy, tmp_path):
    path = toy_copy / "visdial_1.0_train.json"
    v = _load(path)
    _empty(v)  # dialogue 0
    v["data"]["dialogs"][1]["dialog"][0]["question"] = 10_000  # dialogue 1
    _save(path, v)
    out = {k: tmp_path / f"{k}.json" for k in ("train", "val", "dense", "report", "metrics")}
    metrics = prepare_data(
        str(path), str(toy_copy / "visdial_1.0_val.json"), str(toy_copy / "images" / "train"),
        str(toy_copy / "images" / "val"), str(toy_copy / "visdial_1.0_val_dense_annotations.json"),
        out["train"], out["val"], out["dense"], out["report"], out["metrics"], strict=False,
    )
    report = _load(out["report"])
    assert report["dropped"]["train"] == 2 and report["kept"]["train"] == 10
    assert {i["dialog_index"] for i in report["items"]} == {0, 1}
    assert metrics["train_dialogs"] == 10 and metrics["dropped_items"] == 2
    train = load_visdial(out["train"])
    assert len(train.dialogs) == 10 and all("image_path" in d for d in train.dialogs)


def test_prepare_data_rejects_overlapping_splits(toy_copy, tmp_path):
    val = _load(toy_copy / "visdial_1.0_val.json")
    train = _load(toy_copy / "visdial_1.0_train.json")
    val["data"]["dialogs"][0]["image_id"] = train["data"]["dialogs"][0]["image_id"]
    _save(toy_copy / "visdial_1.0_val.json", val)
    (toy_copy / "images" / "val" / "extra").mkdir()
    # give the val dialogue an image under the shared id so only the overlap is wrong
    src = next((toy_copy / "images" / "train").glob(f"*_{train['data']['dialogs'][0]['image_id']:012d}.png"))
    (toy_copy / "images" / "val" / "extra" / src.name).write_bytes(src.read_bytes())
    with pytest.raises(ValueError, match="share 1 image ids"):
        prepare_data(
            str(toy_copy / "visdial_1.0_train.json"), str(toy_copy / "visdial_1.0_val.json"),
            str(toy_copy / "images" / "train"), str(toy_copy / "images" / "val"), None,
            *(tmp_path / f"{k}.json" for k in ("a", "b", "c", "d", "e")),
        )
