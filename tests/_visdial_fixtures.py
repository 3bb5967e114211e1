"""A miniature VisDial v1.0 on disk, in the real layout: train dialogues whose images sit in two COCO folders
(`coco/train2014/COCO_train2014_<id>.jpg`, `coco/val2014/COCO_val2014_<id>.jpg`), and the official val file (our
test split) with VisualDialog_val2018 images and dense annotations. Every image is a tiny solid colour of its own,
so no two files share bytes unless a test makes them."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

N_OPTIONS = 4
ANSWERS = ["yes", "no", "two", "red", "blue", "on the left", "a dog", "maybe"]
QUESTIONS = ["is it sunny?", "how many people?", "what color is the car?", "where is the dog?", "is it indoors?"]

# image id -> (folder under root, file-name prefix)
TRAIN_IMAGES = {9: "train2014", 11: "train2014", 25: "train2014", 42: "val2014", 57: "val2014", 73: "val2014"}
TEST_IMAGES = [100, 101, 102]


def image_file(root: Path, folder: str, image_id: int) -> Path:
    prefix = {"train2014": "COCO_train2014_", "val2014": "COCO_val2014_"}.get(folder, f"VisualDialog_{folder}_")
    return Path(root) / ("coco" if folder.endswith("2014") else "") / folder / f"{prefix}{image_id:012d}.jpg"


def write_image(path: Path, image_id: int) -> Path:
    """A 4x4 solid-colour image whose colour is a function of image_id (distinct bytes per id)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((image_id * 53) % 256, (image_id * 97) % 256, (image_id * 29 + 7) % 256)
    fmt = "PNG" if path.suffix == ".png" else "JPEG"
    Image.new("RGB", (4, 4), colour).save(path, fmt)
    return path


def dialog(image_id: int, rounds: int = 3, shift: int = 0) -> dict:
    """One dialogue: round r asks QUESTIONS[(image_id + r + shift) % 5] and answers from ANSWERS."""
    out = []
    for r in range(rounds):
        q = (image_id + r + shift) % len(QUESTIONS)
        a = (image_id * 3 + r + shift) % len(ANSWERS)
        gt = (image_id + r) % N_OPTIONS
        distractors = [x for x in range(len(ANSWERS)) if x != a][r:r + N_OPTIONS - 1]
        opts = distractors[:gt] + [a] + distractors[gt:]
        out.append({"question": q, "answer": a, "answer_options": opts, "gt_index": gt})
    return {"image_id": image_id, "caption": f"picture number {image_id}", "dialog": out}


def write_split(path: Path, split: str, dialogs: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "1.0", "split": split,
                                "data": {"questions": QUESTIONS, "answers": ANSWERS, "dialogs": dialogs}}))
    return path


def dense(dialogs: list[dict]) -> list[dict]:
    return [{"image_id": d["image_id"], "round_id": 2, "gt_relevance": [1.0, 0.5, 0.0, 0.0]} for d in dialogs]


def build_mini_visdial(root: Path) -> dict[str, Path | list[Path]]:
    """Write the miniature; returns its paths: train_json, test_json, test_dense, coco (the COCO root),
    train_dirs ([train2014, val2014]) and test_images."""
    root = Path(root)
    for image_id, folder in TRAIN_IMAGES.items():
        write_image(image_file(root, folder, image_id), image_id)
    for image_id in TEST_IMAGES:
        write_image(image_file(root, "val2018", image_id), image_id)
    test_dialogs = [dialog(i) for i in TEST_IMAGES]
    dense_path = root / "visdial_1.0_val_dense_annotations.json"
    dense_path.write_text(json.dumps(dense(test_dialogs)))
    return {
        "train_json": write_split(root / "visdial_1.0_train.json", "train", [dialog(i) for i in TRAIN_IMAGES]),
        "test_json": write_split(root / "visdial_1.0_val.json", "val", test_dialogs),
        "test_dense": dense_path,
        "coco": root / "coco",
        "train_dirs": [root / "coco" / "train2014", root / "coco" / "val2014"],
        "test_images": root / "val2018",
    }


def out_paths(root: Path) -> dict[str, Path]:
    """The `out` argument of prepare_data, under root."""
    return {k: Path(root) / f"{k}.json" for k in ("train", "val", "test", "val_dense", "test_dense", "report",
                                                  "metrics")}
