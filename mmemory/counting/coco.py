"""Person counts from COCO instance annotations (`instances_*.json`, through pycocotools), for the COCO images
VisDial users already have: a second real source for the counting stage (config counting.data.source: coco).

    items, report = coco_person_counts("annotations/instances_val2014.json", "val2014/")
    # items: [{"id": COCO image id, "count": persons, "image": "val2014/COCO_val2014_000000000042.jpg"}, ...]

The count of an image is the number of its `person` annotations (category found by name) with `iscrowd == 0`.
Every image of the annotation file is an item, so an image with no person is kept with count 0 (COCO annotates
all 80 categories exhaustively, so no person annotation means no person).

`iscrowd`: COCO marks a group of people too dense to outline one by one as a single annotation with `iscrowd=1`.
Its true count is unknown (a crowd region may hold 3 or 300 people), so
- `"exclude"` (the default) leaves out every image with a person crowd region, counted in the report under
  "person crowd region": the remaining counts are exact;
- `"count"` keeps them and counts each crowd region as 1 person: a lower bound, never the true count.

A missing image file follows the readers' rules (`mmemory.counting.bad_input`): strict raises naming the file, the image
id and the fix; lenient skips it, counted under "missing image" (as are 0-byte files, "empty image"). Decoding
every image (`verify_images=True`, config counting.data.verify_images) also catches corrupt files ("corrupt image");
it is off by default because COCO's 80k+ images take minutes to decode.

The file is checked before pycocotools indexes it, which would silently keep the last of two image records with one
id (and so attach one image's count to another): two records with one id are "duplicate image id" (strict: an error
naming both file names; lenient: both dropped and counted); a `file_name` that is absolute or climbs out of the image
folder (`../../etc/hostname`) is "file name outside the image folder". A file that is not an instances file at all
(`{}`, no `categories`, an annotation without image_id) is an error naming the key and the fix, in both modes.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from mmemory.counting.bad_input import CountingDataError, DataReport, check_image, problem
from mmemory.io import excerpt, read_json_file

logger = logging.getLogger(__name__)

PERSON = "person"


def coco_person_counts(instances_json: str | Path, image_dir: str | Path, iscrowd: str = "exclude",
                       strict: bool = True, verify_images: bool = False) -> tuple[list[dict], DataReport]:
    """Items `{id, count, image}` in image-id order and the report; see the module docstring for the rules."""
    from pycocotools.coco import COCO

    if iscrowd not in ("exclude", "count"):
        raise ValueError(f"coco_person_counts: iscrowd must be 'exclude' or 'count', got {iscrowd!r}")
    instances_json, image_dir = Path(instances_json), Path(image_dir)
    if not instances_json.is_file():
        raise CountingDataError(f"{instances_json}: no such annotation file. Fix: point counting.data.path at a COCO "
                                "instances_*.json (annotations_trainval2014.zip from cocodataset.org)")
    if not image_dir.is_dir():
        raise CountingDataError(f"{image_dir}: no such image folder. Fix: point counting.data.images at the folder "
                                f"holding the images of {instances_json.name}")
    fix = "use a COCO instances_*.json (with images, annotations and categories)"
    data = read_json_file(instances_json, CountingDataError, fix)
    report = DataReport("coco", str(instances_json))
    data = _checked_instances(data, instances_json, image_dir, strict, report, fix)
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):  # pycocotools prints its progress
            coco = COCO()
            coco.dataset = data
            coco.createIndex()
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise CountingDataError(f"{instances_json}: not a COCO instances file ({type(e).__name__}: "
                                f"{excerpt(str(e))}). Fix: {fix}") from None
    logger.info("pycocotools: %s", " ".join(chatter.getvalue().split()))
    cat_ids = coco.getCatIds(catNms=[PERSON])
    if len(cat_ids) != 1:
        names = sorted(c["name"] for c in coco.loadCats(coco.getCatIds()))
        raise CountingDataError(f"{instances_json}: {len(cat_ids)} categories named {PERSON!r} (categories: "
                                f"{names[:10]}). Fix: use a COCO instances file, whose categories include person")
    person = cat_ids[0]

    items = []
    n_crowd_images = n_crowd_regions = 0
    for img_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(img_id)[0]
        report.read += 1
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id], catIds=[person], iscrowd=None))
        crowd = sum(1 for a in anns if a.get("iscrowd", 0))
        count = sum(1 for a in anns if not a.get("iscrowd", 0))
        if crowd:
            n_crowd_images += 1
            n_crowd_regions += crowd
            if iscrowd == "exclude":
                report.skip("person crowd region", info["file_name"])
                continue
            count += crowd
        path = image_dir / info["file_name"]
        where = f"{path} (image id {img_id} in {instances_json.name})"
        if not path.is_file():
            problem(report, strict, "missing image", where, "the annotated image is not in the image folder",
                     info["file_name"])
            continue
        bad = "empty image" if path.stat().st_size == 0 else check_image(path) if verify_images else None
        if bad is not None:
            problem(report, strict, bad, where, "0 bytes" if bad == "empty image" else "not a readable image",
                     info["file_name"])
            continue
        items.append({"id": int(img_id), "count": int(count), "image": str(path)})
    report.kept = len(items)
    report.extra["coco"] = {"person_category_id": int(person), "iscrowd": iscrowd,
                            "images_with_person_crowd_region": n_crowd_images,
                            "person_crowd_regions": n_crowd_regions,
                            "rule": ("images with an iscrowd person region left out (their count is unknown)"
                                     if iscrowd == "exclude" else "each iscrowd person region counted as 1 person "
                                     "(a lower bound)")}
    logger.info("%s: %d images, %d kept (%d with a person crowd region, %s)", instances_json, report.read,
                len(items), n_crowd_images, iscrowd)
    return items, report


def _checked_instances(data, path: Path, image_dir: Path, strict: bool, report: DataReport, fix: str) -> dict:
    """The instances dict with its image records checked before pycocotools indexes them: the structure (fatal),
    then per image record a duplicate id or a file name outside `image_dir` (strict: raise; lenient: the records
    are dropped, with their annotations, and counted in `report`, whose `read` counts every image record)."""
    if not isinstance(data, dict):
        raise CountingDataError(f"{path}: not a COCO instances file (it holds a JSON {type(data).__name__}, not an "
                                f"object). Fix: {fix}")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise CountingDataError(f"{path}: not a COCO instances file (no list {' / '.join(repr(k) for k in missing)}; "
                                f"its keys: {excerpt(sorted(map(str, data)))}). Fix: {fix}")
    shapes = {"images": ("{id: int, file_name: str, ...}", lambda x: isinstance(x.get("id"), int)
                         and not isinstance(x["id"], bool) and isinstance(x.get("file_name"), str) and x["file_name"]),
              "annotations": ("{image_id: int, category_id: int, iscrowd, ...}",
                              lambda x: isinstance(x.get("image_id"), int) and isinstance(x.get("category_id"), int)),
              "categories": ("{id: int, name: str}", lambda x: isinstance(x.get("id"), int)
                             and isinstance(x.get("name"), str))}
    for key, (shape, ok) in shapes.items():
        for k, x in enumerate(data[key]):
            if not (isinstance(x, dict) and ok(x)):
                raise CountingDataError(f"{path}: not a COCO instances file ({key}[{k}] is {excerpt(x)}, not "
                                        f"{shape}). Fix: {fix}")

    by_id: dict[int, list[dict]] = {}
    for img in data["images"]:
        by_id.setdefault(img["id"], []).append(img)
    dropped: set[int] = set()
    for img_id, records in sorted(by_id.items()):
        if len(records) > 1:
            names = " and ".join(repr(r["file_name"]) for r in records[:3])
            problem(report, strict, "duplicate image id", f"{path} (image id {img_id})",
                     f"{len(records)} image records have id {img_id}: {names}", f"id {img_id}: {names}")
            for r in records[1:]:  # lenient: every record is one item read and dropped (the first is counted below)
                report.read += 1
                report.skip("duplicate image id", f"id {img_id}: {r['file_name']}")
            report.read += 1
            dropped.add(img_id)
            continue
        name = records[0]["file_name"]
        # checked by the name, not by resolving it: an image folder of symlinks into a dataset store is fine
        if "\x00" in name or Path(name).is_absolute() or ".." in Path(name).parts:
            problem(report, strict, "file name outside the image folder", f"{path} (image id {img_id})",
                     f"file_name {excerpt(name)} points outside {image_dir}", excerpt(name, 80))
            report.read += 1
            dropped.add(img_id)
    if not dropped:
        return data
    return {**data, "images": [i for i in data["images"] if i["id"] not in dropped],
            "annotations": [a for a in data["annotations"] if a["image_id"] not in dropped]}
