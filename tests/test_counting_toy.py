"""The toy counting frames: the Mall layout, deterministic, counts spread, and the oracle head counter that reads
the generator's head colours (an oracle reference row for the counting table). Run: pytest tests/test_counting_toy.py"""
import csv

import numpy as np
from PIL import Image

from mmemory.counting.toy import count_heads_classical, make_toy_counting


def _labels(root):
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [(int(i), int(c)) for i, c in rows[1:]]


def test_frames_and_labels_are_in_the_mall_layout_and_deterministic(tmp_path):
    rows = make_toy_counting(tmp_path / "a", n=40, seed=3)
    make_toy_counting(tmp_path / "b", n=40, seed=3)
    header, labels = _labels(tmp_path / "a")
    assert header == ["id", "count"] and labels == rows
    for i, _ in labels:
        frame = tmp_path / "a" / "frames" / f"seq_{i:06d}.jpg"
        assert frame.read_bytes() == (tmp_path / "b" / "frames" / f"seq_{i:06d}.jpg").read_bytes()
        assert Image.open(frame).size == (128, 96)
    counts = [c for _, c in labels]
    assert min(counts) >= 0 and max(counts) <= 15 and len(set(counts)) >= 8  # spread over the range
    other = make_toy_counting(tmp_path / "c", n=5, seed=4)
    assert (tmp_path / "c" / "frames" / "seq_000001.jpg").read_bytes() != \
        (tmp_path / "a" / "frames" / "seq_000001.jpg").read_bytes() or other[0] != rows[0]


def test_the_classical_head_counter_reads_the_count_from_the_pixels(tmp_path):
    rows = make_toy_counting(tmp_path, n=60, seed=0)
    pred = np.array([count_heads_classical(tmp_path / "frames" / f"seq_{i:06d}.jpg") for i, _ in rows])
    true = np.array([c for _, c in rows])
    mae = float(np.abs(pred - true).mean())
    mean_baseline = float(np.abs(true.mean() - true).mean())
    assert mae < mean_baseline / 2, (mae, mean_baseline)  # far better than ignoring the image
    assert (pred <= true + 1).all()  # touching or hidden heads merge or vanish: it undercounts, never invents
    assert count_heads_classical(np.full((96, 128, 3), 150, dtype=np.uint8)) == 0
