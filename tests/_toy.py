"""Toy VisDial as `prepare_data` writes it (every dialogue carries `image_path`), for the stages' test fixtures."""
from __future__ import annotations

import json
from pathlib import Path

from mmemory.toy.visdial import build_toy_visdial


def prepared_toy(root: Path, n_train: int, n_val: int, image_size: int = 32, seed: int = 0) -> dict[str, Path]:
    """Render toy VisDial under root/raw and write root/{train,val,test}.json with image paths; returns the paths
    (and the val and test dense annotations)."""
    root = Path(root)
    build_toy_visdial(root / "raw", n_train=n_train, n_val=n_val, image_size=image_size, rounds=10, n_options=100,
                      max_objects=3, seed=seed, memory_share=0.0)
    paths = {f"{s}_dense": root / "raw" / f"visdial_1.0_{s}_dense_annotations.json" for s in ("val", "test")}
    for split in ("train", "val", "test"):
        data = json.loads((root / "raw" / f"visdial_1.0_{split}.json").read_text())
        for d in data["data"]["dialogs"]:
            d["image_path"] = str(root / "raw" / "images" / split / f"toy_{split}_{d['image_id']:012d}.png")
        paths[split] = root / f"{split}.json"
        paths[split].write_text(json.dumps(data))
    return paths
