"""Bad input to the counting readers, one probe per test: no silent image/label mismatch (Mall frames and COCO
image records that share an id), every drop counted so that `read == kept + sum(skipped)`, non-UTF-8 and junk rows
as one clear error, COCO files that are not instances files or point outside the image folder, corrupt images caught
when config counting.data.verify_images asks, and no empty val or test split.

    pytest tests/test_bad_input_counting.py -q
"""
from __future__ import annotations

import json

import pytest
from PIL import Image

from mmemory.counting.coco import coco_person_counts
from mmemory.counting.data import CountingDataConfig, CountingDataError, read_mall
from mmemory.counting.stage import prepare_counting_data

from test_counting_coco import IMAGES, make_coco
from test_counting_data import _frame, make_mall


def _adds_up(report) -> None:
    j = report.to_json()
    assert j["read"] == j["kept"] + sum(j["skipped"].values()), j


# ------------------------------------------------------------------------------------------- Mall: one id, two files

def test_two_frame_files_for_one_id_stop_strict_mode_naming_both(tmp_path):
    """The probe: seq_000001.jpg and seq_1.jpg both map to id 1; one silently won and row 1 got another image."""
    frames = make_mall(tmp_path, n=12)
    _frame(frames / "seq_1.jpg", 20)  # frame 20's picture under a second name of id 1
    with pytest.raises(CountingDataError) as e:
        read_mall(tmp_path)
    msg = str(e.value)
    assert "seq_000001.jpg" in msg and "seq_1.jpg" in msg and "frame id 1" in msg and "Fix:" in msg
    assert "labels.csv line 2" in msg


def test_two_frame_files_for_one_id_are_dropped_and_counted_in_lenient_mode(tmp_path):
    frames = make_mall(tmp_path, n=12)
    _frame(frames / "seq_1.jpg", 20)
    _frame(frames / "seq_000003.png", 21)  # the same id by suffix
    items, report = read_mall(tmp_path, strict=False)
    assert {it["id"] for it in items} == set(range(1, 13)) - {1, 3}  # neither file of id 1 or 3 is paired
    j = report.to_json()
    assert j["read"] == 12 and j["kept"] == 10 and j["skipped"] == {"two frames for one id": 2}
    assert any("seq_000001.jpg" in ex and "seq_1.jpg" in ex for ex in j["examples"]["two frames for one id"])
    _adds_up(report)


def test_two_unlabelled_files_for_one_id_are_one_item(tmp_path):
    frames = make_mall(tmp_path, n=4)
    _frame(frames / "seq_000009.jpg", 9)
    _frame(frames / "seq_9.png", 10)
    items, report = read_mall(tmp_path, strict=False)
    assert len(items) == 4 and report.to_json()["skipped"] == {"two frames for one id": 1}
    _adds_up(report)


# ------------------------------------------------------------------------------------- Mall: bytes and odd numbers

def test_non_utf8_labels_csv_is_one_error_naming_file_line_and_fix(tmp_path):
    make_mall(tmp_path, n=3)
    (tmp_path / "labels.csv").write_bytes("id,count\n1,2\n2,3 # 사람\n".encode("cp949"))
    with pytest.raises(CountingDataError, match=r"labels.csv:3: byte 0x.. at column \d+ is not UTF-8. Fix: re-save"):
        read_mall(tmp_path)


@pytest.mark.parametrize("count,why", [("\u0663", "ASCII digits"), ("1" * 40, "40 digits")])
def test_non_ascii_or_40_digit_counts_are_refused(tmp_path, count, why):
    make_mall(tmp_path, n=3, labels=["1,2", f"2,{count}", "3,1"])
    with pytest.raises(CountingDataError, match=rf"labels.csv:3: count .* {why}"):
        read_mall(tmp_path)
    items, report = read_mall(tmp_path, strict=False)
    assert [it["id"] for it in items] == [1, 3] and report.to_json()["skipped"] == {"bad count": 1}
    _adds_up(report)


def test_a_huge_bad_row_is_quoted_to_200_characters(tmp_path):
    make_mall(tmp_path, n=3, labels=["1,2", "2," + "x" * 5_000_000, "3,1"])
    with pytest.raises(CountingDataError) as e:
        read_mall(tmp_path)
    assert "labels.csv:3" in str(e.value) and len(str(e.value)) < 1000 and "more characters" in str(e.value)
    items, report = read_mall(tmp_path, strict=False)
    assert len(items) == 2 and report.to_json()["skipped"] == {"malformed row": 1}
    _adds_up(report)


def test_nothing_usable_names_the_reasons_not_a_report_that_was_never_written(tmp_path):
    make_mall(tmp_path, n=3, labels=["1,x", "2,y", "3,z"])
    cfg = {"source": "mall", "path": str(tmp_path), "strict": False}
    with pytest.raises(CountingDataError) as e:
        prepare_counting_data(cfg, tmp_path / "out")
    msg = str(e.value)
    assert "bad count: 3" in msg and "line 2" in msg and "data_report.json" not in msg and "Fix:" in msg
    assert not (tmp_path / "out" / "data_report.json").exists()


# ------------------------------------------------------------------------------------------------------- splits

def test_tiny_input_refuses_an_empty_val_or_test_split_and_says_how_many_are_needed(tmp_path):
    make_mall(tmp_path, n=4)
    cfg = {"source": "mall", "path": str(tmp_path)}
    with pytest.raises(CountingDataError) as e:
        prepare_counting_data(cfg, tmp_path / "out")
    msg = str(e.value)
    assert "val split would be empty" in msg and "4 usable frames" in msg and "at least 7 distinct frames" in msg
    assert not (tmp_path / "out").exists()  # nothing half-written
    make_mall(tmp_path, n=7)
    report = prepare_counting_data(cfg, tmp_path / "out")
    assert all(report["split"][s] >= 1 for s in ("train", "val", "test"))


def test_split_mall_with_too_few_frames_for_val_is_refused(tmp_path):
    make_mall(tmp_path, n=6)
    cfg = {"source": "mall", "path": str(tmp_path), "split": "mall", "train_size": 3}
    with pytest.raises(CountingDataError, match="val split would be empty.*split mall puts the first train_size"):
        prepare_counting_data(cfg, tmp_path / "out")


# ------------------------------------------------------------------------------------------------------- COCO

def _rewrite(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_coco_duplicate_image_ids_stop_strict_mode_naming_both_records(tmp_path):
    path, images = make_coco(tmp_path)
    Image.new("RGB", (8, 6)).save(images / "other.jpg", format="JPEG")
    _rewrite(path, lambda d: d["images"].append({"id": 11, "file_name": "other.jpg", "width": 8, "height": 6}))
    with pytest.raises(CountingDataError) as e:
        coco_person_counts(path, images)
    msg = str(e.value)
    assert "image id 11" in msg and IMAGES[11] in msg and "other.jpg" in msg and "Fix:" in msg


def test_coco_duplicate_image_ids_are_dropped_and_counted_in_lenient_mode(tmp_path):
    path, images = make_coco(tmp_path)
    Image.new("RGB", (8, 6)).save(images / "other.jpg", format="JPEG")
    _rewrite(path, lambda d: d["images"].append({"id": 11, "file_name": "other.jpg", "width": 8, "height": 6}))
    items, report = coco_person_counts(path, images, strict=False)
    assert 11 not in {it["id"] for it in items}  # neither image gets image 11's three persons
    j = report.to_json()
    assert j["skipped"]["duplicate image id"] == 2 and j["read"] == 5
    _adds_up(report)


def test_coco_empty_object_is_a_clear_error_not_a_keyerror(tmp_path):
    path, images = make_coco(tmp_path)
    path.write_text("{}")
    with pytest.raises(CountingDataError, match=r"not a COCO instances file \(no list 'images' / 'annotations' / "
                                                r"'categories'.*Fix: use a COCO instances"):
        coco_person_counts(path, images)


def test_coco_deeply_nested_json_is_a_clear_error(tmp_path):
    path, images = make_coco(tmp_path)
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CountingDataError, match="nested too deeply"):
        coco_person_counts(path, images)


@pytest.mark.parametrize("name", ["../../etc/hostname", "/etc/hostname"])
def test_coco_file_name_outside_the_image_folder_is_refused(tmp_path, name):
    path, images = make_coco(tmp_path)
    _rewrite(path, lambda d: d["images"].append({"id": 99, "file_name": name, "width": 8, "height": 6}))
    with pytest.raises(CountingDataError, match=r"image id 99.*points outside"):
        coco_person_counts(path, images, iscrowd="count")
    items, report = coco_person_counts(path, images, iscrowd="count", strict=False)
    assert 99 not in {it["id"] for it in items}
    assert report.to_json()["skipped"] == {"file name outside the image folder": 1}
    _adds_up(report)


def test_coco_corrupt_image_is_caught_when_config_asks_to_verify(tmp_path):
    path, images = make_coco(tmp_path)
    (images / IMAGES[14]).write_bytes(b"\xff\xd8\xff not really a jpeg")
    base = {"source": "coco", "path": str(path), "images": str(images), "iscrowd": "count", "test_share": 0.25,
            "val_share_of_train": 0.34}
    assert CountingDataConfig.from_dict(base).verify_images is False  # the default: fast, corrupt files pass
    with pytest.raises(CountingDataError, match=rf"{IMAGES[14]}.*not a readable image"):
        prepare_counting_data({**base, "verify_images": True}, tmp_path / "out")
