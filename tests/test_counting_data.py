"""The counting data reader (the Mall layout, both nestings), every bad-input case (strict: an error naming the row
or file and the fix; lenient: skipped and counted by reason), both split modes, disjointness by content,
determinism, and prepare_counting_data / load_split. Run: pytest tests/test_counting_data.py"""
import json
import shutil

import pytest
from PIL import Image

from mmemory.config import ConfigError
from mmemory.counting.data import CountingDataConfig, CountingDataError, load_split, read_mall, split_items
from mmemory.counting.stage import prepare_counting_data


def _frame(path, k):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), ((k * 37) % 256, (k * 91) % 256, (k * 13) % 256)).save(path, format="JPEG")


def make_mall(root, n=10, nested=False, labels=None, header="id,count"):
    """n frames seq_000001.jpg .. with distinct pixels, and labels.csv (`labels` replaces the rows' text)."""
    frames = root / "frames" / "frames" if nested else root / "frames"
    for k in range(1, n + 1):
        _frame(frames / f"seq_{k:06d}.jpg", k)
    rows = labels if labels is not None else [f"{k},{k % 7}" for k in range(1, n + 1)]
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return frames


@pytest.mark.parametrize("nested", [False, True])
def test_reader_reads_both_nestings(tmp_path, nested):
    frames = make_mall(tmp_path, n=6, nested=nested)
    items, report = read_mall(tmp_path)
    assert [it["id"] for it in items] == [1, 2, 3, 4, 5, 6]
    assert [it["count"] for it in items] == [1, 2, 3, 4, 5, 6 % 7]
    assert items[0]["image"] == str(frames / "seq_000001.jpg")
    assert report.to_json() == {"source": "mall", "path": str(tmp_path), "read": 6, "kept": 6, "skipped": {},
                                "examples": {}}


def test_no_frames_folder_or_labels_is_a_clear_error(tmp_path):
    (tmp_path / "labels.csv").write_text("id,count\n1,2\n")
    with pytest.raises(CountingDataError, match=r"no frames folder .*frames/seq_000001.jpg"):
        read_mall(tmp_path)
    with pytest.raises(CountingDataError, match="no labels.csv"):
        read_mall(tmp_path / "elsewhere")


def _corrupt(frames, k):
    (frames / f"seq_{k:06d}.jpg").write_bytes(b"not a jpeg at all")


def _truncate(frames, k):
    p = frames / f"seq_{k:06d}.jpg"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


# (case, labels rows or None, a change to the frames, reason, what the strict message must name)
CASES = [
    ("missing frame", None, lambda f: (f / "seq_000003.jpg").unlink(), "label with no frame",
     r"labels.csv:4: id 3 has no frame .*seq_000003.jpg"),
    ("0-byte image", None, lambda f: (f / "seq_000002.jpg").write_bytes(b""), "empty image",
     r"seq_000002.jpg: the frame of id 2 \(labels.csv line 3\) is 0 bytes"),
    ("corrupt image", None, lambda f: _corrupt(f, 4), "corrupt image", r"seq_000004.jpg: .*not a readable image"),
    ("truncated image", None, lambda f: _truncate(f, 4), "corrupt image", r"seq_000004.jpg: .*not a readable"),
    ("negative count", ["1,1", "2,-3", "3,3", "4,4", "5,5"], None, "bad count",
     r"labels.csv:3: count '-3' for id 2 is not a non-negative integer"),
    ("fractional count", ["1,1", "2,2", "3,2.5", "4,4", "5,5"], None, "bad count", r"labels.csv:4: count '2.5'"),
    ("word count", ["1,1", "2,two", "3,3", "4,4", "5,5"], None, "bad count", r"labels.csv:3: count 'two'"),
    ("empty count", ["1,1", "2,", "3,3", "4,4", "5,5"], None, "bad count", r"labels.csv:3: count ''"),
    ("bad id", ["1,1", "x,2", "3,3", "4,4", "5,5"], None, "bad id", r"labels.csv:3: id 'x'"),
    ("duplicate id", ["1,1", "2,2", "3,3", "2,5", "4,4", "5,5"], None, "duplicate id",
     r"labels.csv:5: id 2 already has a row at line 3"),
    ("frame with no label", ["1,1", "2,2", "3,3", "4,4"], None, "frame with no label",
     r"seq_000005.jpg: no row for id 5 in .*labels.csv"),
    ("malformed row", ["1,1", "2,2,2", "3,3", "4,4", "5,5"], None, "malformed row", r"labels.csv:3: 3 fields"),
    ("frame name", None, lambda f: _frame(f / "IMG_0001.jpg", 99), "frame name not seq_<id>",
     r"IMG_0001.jpg: an image not named seq_<id>.jpg"),
]


@pytest.mark.parametrize("case,rows,change,reason,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_strict_names_the_row_or_file_and_the_fix(tmp_path, case, rows, change, reason, message):
    frames = make_mall(tmp_path, n=5, labels=rows)
    if change:
        change(frames)
    with pytest.raises(CountingDataError, match=message) as e:
        read_mall(tmp_path)
    assert "Fix:" in str(e.value) and "strict: false" in str(e.value)


@pytest.mark.parametrize("case,rows,change,reason,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_lenient_skips_and_counts_by_reason(tmp_path, case, rows, change, reason, message):
    frames = make_mall(tmp_path, n=5, labels=rows)
    if change:
        change(frames)
    items, report = read_mall(tmp_path, strict=False)
    r = report.to_json()
    if case == "bad id":  # the row cannot say which frame it meant, so frame 2 is also unlabelled
        assert r["skipped"] == {"bad id": 1, "frame with no label": 1}, r
    else:
        assert r["skipped"] == {reason: 1}, r
    assert len(r["examples"][reason]) == 1
    assert r["kept"] == len(items) == (5 if case in ("frame name", "duplicate id") else 4)  # an extra file or row
    assert r["read"] == r["kept"] + sum(r["skipped"].values())
    assert len({it["id"] for it in items}) == len(items)


def test_lenient_counts_several_reasons_with_examples(tmp_path):
    frames = make_mall(tmp_path, n=8, labels=["1,1", "2,-1", "3,x", "4,4", "4,5", "5,5", "6,6", "9,1"])
    (frames / "seq_000006.jpg").write_bytes(b"")
    items, report = read_mall(tmp_path, strict=False)
    r = report.to_json()
    # frames 2 and 3 are counted once, by their bad rows; frames 7 and 8 have no row
    assert r["skipped"] == {"bad count": 2, "duplicate id": 1, "label with no frame": 1, "empty image": 1,
                            "frame with no label": 2}
    assert r["examples"]["bad count"] == ["line 3 (id 2)", "line 4 (id 3)"]
    assert r["examples"]["frame with no label"] == ["seq_000007.jpg", "seq_000008.jpg"]
    assert r["examples"]["label with no frame"] == ["id 9"] and r["examples"]["empty image"] == ["seq_000006.jpg"]
    assert [it["id"] for it in items] == [1, 4, 5] and items[1]["count"] == 4  # the first row of id 4 is kept
    assert r["read"] == r["kept"] + sum(r["skipped"].values())


@pytest.mark.parametrize("header", ["id,people", "count,id", "frame,count", ""])
def test_a_bad_header_is_fatal_even_lenient(tmp_path, header):
    make_mall(tmp_path, n=3, header=header)
    with pytest.raises(CountingDataError, match=r"labels.csv:1: the header is .*not id,count"):
        read_mall(tmp_path, strict=False)


def test_header_with_bom_and_spaces_is_read(tmp_path):
    make_mall(tmp_path, n=3)
    text = (tmp_path / "labels.csv").read_text()
    (tmp_path / "labels.csv").write_text("\ufeff" + text.replace("id,count", "id, count", 1), encoding="utf-8")
    assert len(read_mall(tmp_path)[0]) == 3


# ------------------------------------------------------------------------------------------------------ splits

def _digest(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _check_disjoint(splits):
    ids = [it["id"] for s in splits.values() for it in s]
    assert len(ids) == len(set(ids))
    where = {}
    for name, s in splits.items():
        for it in s:
            assert where.setdefault(_digest(it["image"]), name) == name, it


def test_random_split_sizes_disjoint_and_deterministic(tmp_path):
    make_mall(tmp_path, n=50)
    items, _ = read_mall(tmp_path)
    cfg = CountingDataConfig(split="random", seed=3)
    a, b = split_items(items, cfg), split_items(items, cfg)
    assert a == b
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (36, 4, 10)  # 80:20, val 10% of train
    _check_disjoint(a)
    assert split_items(items, CountingDataConfig(split="random", seed=4)) != a


def test_mall_split_first_train_size_by_id(tmp_path):
    make_mall(tmp_path, n=30)
    items, _ = read_mall(tmp_path)
    cfg = CountingDataConfig(split="mall", train_size=20, val_share_of_train=0.25)
    s = split_items(list(reversed(items)), cfg)
    assert [it["id"] for it in s["test"]] == list(range(21, 31))
    assert sorted(it["id"] for it in s["train"] + s["val"]) == list(range(1, 21)) and len(s["val"]) == 5
    _check_disjoint(s)
    assert split_items(items, cfg) == s
    with pytest.raises(CountingDataError, match="none is left for test"):
        split_items(items, CountingDataConfig(split="mall", train_size=30))


@pytest.mark.parametrize("mode", ["random", "mall"])
def test_identical_images_never_cross_splits(tmp_path, mode):
    frames = make_mall(tmp_path, n=40)
    for k in (25, 31, 38):  # test-side frames that repeat train-side frame 2 (Mall: frames 21.. are test)
        shutil.copy(frames / "seq_000002.jpg", frames / f"seq_{k:06d}.jpg")
    shutil.copy(frames / "seq_000005.jpg", frames / "seq_000006.jpg")
    items, _ = read_mall(tmp_path)
    stats = {}
    s = split_items(items, CountingDataConfig(split=mode, train_size=20, seed=1), stats)
    _check_disjoint(s)
    if mode == "random":
        assert sum(len(v) for v in s.values()) == 40 and stats["repeated_images_kept_together"] == 4
        assert stats["repeated_images_dropped_from_test"] == 0
    else:
        assert {it["id"] for it in s["test"]} == set(range(21, 41)) - {25, 31, 38}
        assert stats["repeated_images_dropped_from_test"] == 3


def test_config_is_strict_and_checked():
    with pytest.raises(ConfigError, match="unknown key"):
        CountingDataConfig.from_dict({"spilt": "mall"})
    with pytest.raises(ConfigError, match="source must be"):
        CountingDataConfig(source="shanghaitech")
    with pytest.raises(ConfigError, match="split must be"):
        CountingDataConfig(split="80:20")
    with pytest.raises(ConfigError, match="needs path"):
        CountingDataConfig(source="mall")
    with pytest.raises(ConfigError, match="test_share"):
        CountingDataConfig(test_share=1.0)


# ------------------------------------------------------------------------------------------ the stage's data

def test_prepare_toy_data_writes_splits_and_report(tmp_path):
    cfg = {"source": "toy", "toy_n": 30, "seed": 2}
    report = prepare_counting_data(cfg, tmp_path / "data", tmp_path / "toy")
    assert report["source"] == "toy" and report["read"] == report["kept"] == 30 and report["skipped"] == {}
    assert report["split"]["train"] + report["split"]["val"] + report["split"]["test"] == 30
    assert json.loads((tmp_path / "data" / "data_report.json").read_text()) == report
    splits = {name: load_split(tmp_path / "data" / f"{name}.json") for name in ("train", "val", "test")}
    assert len(splits["test"]) == 6 and all(0 <= it["count"] <= 15 for s in splits.values() for it in s)
    _check_disjoint(splits)
    first = (tmp_path / "data" / "train.json").read_bytes()
    prepare_counting_data(cfg, tmp_path / "data", tmp_path / "toy")
    assert (tmp_path / "data" / "train.json").read_bytes() == first


def test_prepare_mall_lenient_reports_and_report_path(tmp_path):
    frames = make_mall(tmp_path / "mall", n=20)
    (frames / "seq_000007.jpg").write_bytes(b"")
    cfg = CountingDataConfig(source="mall", path=str(tmp_path / "mall"), strict=False)
    report = prepare_counting_data(cfg, tmp_path / "data", report_path=tmp_path / "data_report.json")
    assert report["skipped"] == {"empty image": 1} and report["examples"] == {"empty image": ["seq_000007.jpg"]}
    assert json.loads((tmp_path / "data_report.json").read_text())["kept"] == 19
    with pytest.raises(CountingDataError, match="seq_000007.jpg"):
        prepare_counting_data(CountingDataConfig(source="mall", path=str(tmp_path / "mall")), tmp_path / "d2")


def test_load_split_checks_fields(tmp_path):
    p = tmp_path / "test.json"
    p.write_text(json.dumps([{"id": 1, "count": 2, "image": "a.jpg"}, {"id": 2, "count": -1, "image": "b.jpg"}]))
    with pytest.raises(CountingDataError, match=r"test.json: item 1 .*rerun the counting_data rule"):
        load_split(p)
    p.write_text(json.dumps({"id": 1}))
    with pytest.raises(CountingDataError, match="not a list"):
        load_split(p)
