"""A classical people counter that knows nothing of the toy generator: blob detection on a grey image
with scipy, calibrated by a straight line, its settings chosen on val.

`count_heads_classical` (`mmemory.counting.toy`) thresholds the generator's own head colours, which nothing else in
a toy frame uses: an oracle reference, not a baseline. This counter uses no colour, size or layout of the
generator:

1. the frame in grey (ITU-R 601 luma), its local background removed by subtracting a wide Gaussian blur, so a floor
   of any shade is flat;
2. the scale-normalised Laplacian of Gaussian at `sigma` (`scipy.ndimage.gaussian_laplace`), negated and in
   absolute value, so dark and bright blobs both respond;
3. blobs: local maxima (a 3 x 3 x `sigma`-wide `maximum_filter`) above `threshold`;
4. count = round(a * blobs + b), a and b fitted by least squares on the train frames (a person makes a head, a body
   and legs, a bench or a plant makes blobs too: the line maps blobs to people), clipped at 0.

(`sigma`, `threshold`) are chosen on val by MAE from `SIGMAS` x `THRESHOLDS` (the first best on ties); the line is
fitted on train for each. Test is never seen while choosing.

    counter = fit_blob_counter(train_items, val_items)   # items: {"image": path, "count": n}
    counts = counter.predict(test_items)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

SIGMAS = (1.0, 1.5, 2.0, 3.0, 4.0)
THRESHOLDS = (4.0, 8.0, 12.0, 18.0, 25.0, 35.0, 50.0, 70.0, 100.0)
BACKGROUND_SIGMA = 8.0  # the blur that estimates a frame's local background


def grey(image: Image.Image | np.ndarray | str | Path) -> np.ndarray:
    """The frame as float luma (0-255)."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            image = im.convert("RGB")
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    return arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114


def blob_response(g: np.ndarray, sigma: float) -> np.ndarray:
    """|scale-normalised LoG| of the frame with its local background removed."""
    from scipy import ndimage

    flat = g - ndimage.gaussian_filter(g, BACKGROUND_SIGMA)
    return np.abs(sigma ** 2 * ndimage.gaussian_laplace(flat, sigma))


def count_blobs(g: np.ndarray, sigma: float, threshold: float) -> int:
    """Local maxima of `blob_response` above `threshold`."""
    from scipy import ndimage

    r = blob_response(g, sigma)
    size = max(3, int(round(2 * sigma)) * 2 + 1)
    peaks = (r == ndimage.maximum_filter(r, size=size)) & (r > threshold)
    return int(peaks.sum())


def _blob_table(items: Sequence[dict]) -> dict[tuple[float, float], np.ndarray]:
    """Blob counts of every item at every (sigma, threshold) of the grid."""
    from scipy import ndimage

    out = {(s, t): np.zeros(len(items)) for s in SIGMAS for t in THRESHOLDS}
    for i, it in enumerate(items):
        g = grey(it["image"])
        for s in SIGMAS:
            r = blob_response(g, s)
            size = max(3, int(round(2 * s)) * 2 + 1)
            maxima = r == ndimage.maximum_filter(r, size=size)
            for t in THRESHOLDS:
                out[(s, t)][i] = int((maxima & (r > t)).sum())
    return out


def _line(blobs: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    a, b = np.polyfit(blobs, counts, 1) if np.ptp(blobs) > 0 else (0.0, float(np.mean(counts)))
    return float(a), float(b)


def _apply(blobs: np.ndarray, a: float, b: float) -> np.ndarray:
    return np.clip(np.rint(a * blobs + b), 0, None).astype(int)


@dataclass
class BlobCounter:
    """A fitted counter: the chosen (sigma, threshold), the train line (a, b), and every setting's val MAE."""

    sigma: float
    threshold: float
    a: float
    b: float
    val_mae: dict[str, float] = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0

    def count(self, image) -> int:
        return int(_apply(np.asarray([count_blobs(grey(image), self.sigma, self.threshold)]), self.a, self.b)[0])

    def predict(self, items: Sequence[dict]) -> list[int]:
        return [self.count(it["image"]) for it in items]

    def settings(self) -> dict:
        return {"sigma": self.sigma, "threshold": self.threshold,
                "line": {"a": round(self.a, 4), "b": round(self.b, 4)},
                "val_mae": self.val_mae[f"sigma={self.sigma:g} threshold={self.threshold:g}"],
                "train_frames": self.n_train, "val_frames": self.n_val,
                "grid": {"sigma": list(SIGMAS), "threshold": list(THRESHOLDS)}}


def fit_blob_counter(train: Sequence[dict], val: Sequence[dict]) -> BlobCounter:
    """For each (sigma, threshold) fit the line on `train`, score MAE on `val`; keep the best (first on ties)."""
    if len(train) < 2 or not val:
        raise ValueError("fit_blob_counter: needs at least two train frames and one val frame")
    y_train = np.asarray([it["count"] for it in train], dtype=float)
    y_val = np.asarray([it["count"] for it in val], dtype=float)
    tr, va = _blob_table(train), _blob_table(val)
    best, maes = None, {}
    for key in tr:
        a, b = _line(tr[key], y_train)
        mae = float(np.abs(_apply(va[key], a, b) - y_val).mean())
        maes[f"sigma={key[0]:g} threshold={key[1]:g}"] = round(mae, 4)
        if best is None or mae < best[0]:
            best = (mae, key, a, b)
    _, (sigma, threshold), a, b = best
    return BlobCounter(sigma, threshold, a, b, maes, len(train), len(val))
