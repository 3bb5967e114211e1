"""Person counts from a miniature COCO instances file through pycocotools: persons counted, other categories not,
zero-person images kept, the iscrowd rule (exclude / count as 1), missing images strict and lenient, and the COCO
source through prepare_counting_data. Run: pytest tests/test_counting_coco.py"""
import json

import pytest
from PIL import Image

from mmemory.counting.coco import coco_person_counts
from mmemory.counting.data import CountingDataError
from mmemory.counting.stage import prepare_counting_data

IMAGES = {11: "COCO_val2014_000000000011.jpg", 12: "COCO_val2014_000000000012.jpg",
          13: "COCO_val2014_000000000013.jpg", 14: "COCO_val2014_000000000014.jpg"}


def _ann(ann_id, image_id, cat, iscrowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": iscrowd, "area": 10.0,
            "bbox": [0, 0, 2, 2], "segmentation": [[0, 0, 2, 0, 2, 2]] if not iscrowd else
            {"counts": [0, 4], "size": [2, 2]}}


def make_coco(tmp_path, with_files=True):
    """4 images: 11 has 3 persons and a dog; 12 has a dog only; 13 has 2 persons and a person crowd region;
    14 has 1 person."""
    anns = [_ann(1, 11, 1), _ann(2, 11, 1), _ann(3, 11, 1), _ann(4, 11, 18), _ann(5, 12, 18),
            _ann(6, 13, 1), _ann(7, 13, 1), _ann(8, 13, 1, iscrowd=1), _ann(9, 14, 1)]
    data = {"info": {}, "licenses": [],
            "images": [{"id": i, "file_name": n, "width": 8, "height": 6} for i, n in IMAGES.items()],
            "annotations": anns,
            "categories": [{"id": 18, "name": "dog", "supercategory": "animal"},
                           {"id": 1, "name": "person", "supercategory": "person"}]}
    path = tmp_path / "instances_val2014.json"
    path.write_text(json.dumps(data))
    images = tmp_path / "val2014"
    images.mkdir()
    if with_files:
        for i, n in IMAGES.items():
            Image.new("RGB", (8, 6), (i * 10, 0, 0)).save(images / n, format="JPEG")
    return path, images


def test_counts_persons_only_and_keeps_zero_person_images(tmp_path):
    path, images = make_coco(tmp_path)
    items, report = coco_person_counts(path, images)
    assert [(it["id"], it["count"]) for it in items] == [(11, 3), (12, 0), (14, 1)]
    assert items[0]["image"] == str(images / IMAGES[11])
    r = report.to_json()
    assert r["source"] == "coco" and r["read"] == 4 and r["kept"] == 3
    assert r["skipped"] == {"person crowd region": 1} and r["examples"] == {"person crowd region": [IMAGES[13]]}
    assert r["coco"]["person_category_id"] == 1 and r["coco"]["images_with_person_crowd_region"] == 1


def test_iscrowd_count_counts_a_crowd_region_as_one(tmp_path):
    path, images = make_coco(tmp_path)
    items, report = coco_person_counts(path, images, iscrowd="count")
    assert [(it["id"], it["count"]) for it in items] == [(11, 3), (12, 0), (13, 3), (14, 1)]
    assert report.to_json()["skipped"] == {} and "lower bound" in report.to_json()["coco"]["rule"]
    with pytest.raises(ValueError, match="iscrowd"):
        coco_person_counts(path, images, iscrowd="ignore")


def test_missing_image_strict_and_lenient(tmp_path):
    path, images = make_coco(tmp_path)
    (images / IMAGES[14]).unlink()
    (images / IMAGES[12]).write_bytes(b"")
    with pytest.raises(CountingDataError, match=r"COCO_val2014_000000000012.jpg \(image id 12 .*0 bytes.*Fix:"):
        coco_person_counts(path, images)
    items, report = coco_person_counts(path, images, strict=False)
    assert [it["id"] for it in items] == [11]
    assert report.to_json()["skipped"] == {"empty image": 1, "missing image": 1, "person crowd region": 1}
    (images / IMAGES[12]).unlink()
    with pytest.raises(CountingDataError, match=r"image id 12 in instances_val2014.json\): the annotated image"):
        coco_person_counts(path, images)


def test_corrupt_image_caught_when_verifying(tmp_path):
    path, images = make_coco(tmp_path)
    (images / IMAGES[11]).write_bytes(b"garbage")
    assert len(coco_person_counts(path, images)[0]) == 3  # not decoded by default
    with pytest.raises(CountingDataError, match="not a readable image"):
        coco_person_counts(path, images, verify_images=True)


def test_not_a_coco_file_or_no_person_category(tmp_path):
    path, images = make_coco(tmp_path)
    bad = tmp_path / "instances_bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(CountingDataError, match="not a COCO instances file"):
        coco_person_counts(bad, images)
    data = json.loads(path.read_text())
    data["categories"] = [c for c in data["categories"] if c["name"] != "person"]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 1]
    bad.write_text(json.dumps(data))
    with pytest.raises(CountingDataError, match="0 categories named 'person'"):
        coco_person_counts(bad, images)
    with pytest.raises(CountingDataError, match="no such image folder"):
        coco_person_counts(path, tmp_path / "nowhere")


def test_coco_source_through_prepare(tmp_path):
    path, images = make_coco(tmp_path)
    cfg = {"source": "coco", "path": str(path), "images": str(images), "iscrowd": "count", "test_share": 0.25,
           "val_share_of_train": 0.34}
    report = prepare_counting_data(cfg, tmp_path / "data")
    assert report["kept"] == 4 and report["split"]["test"] == 1 and report["split"]["val"] == 1
    assert report["split"]["train"] == 2
