"""The embedded default's synthetic "CCTV" frames, in the Mall layout (`labels.csv` + `frames/seq_{id:06d}.jpg`),
so that they go through the same reader (`mmemory.counting.data.load_counting`) as the real Mall frames.

A frame is a slanted view of a mall floor: a wall band with shop fronts at the top, a textured grey-beige tiled
floor below it, in perspective (figures and objects further up the image are smaller). On it stand `count` people
(a round head of a skin tone over a body of a clothing colour, with legs; varied sizes) and a few distractor objects
that are not people (benches, potted plants, bins: shapes without a head). Everything is drawn back to front, so a
nearer figure can hide part of a farther one; heads may touch (partial overlap), which is what makes exact counting
hard but learnable. Counts are drawn uniformly from 0..`max_count`. Deterministic by seed.

The head colours (`HEAD_COLORS`) are used for heads only: no clothing, floor, wall or distractor colour is within
`HEAD_COLOR_TOLERANCE` of them (`_check_palette`), so `count_heads_classical` can count people as connected
components of head-coloured pixels (scipy.ndimage.label with a minimum area). Knowing the generator's colours, it
is the counting table's ORACLE reference (imperfect only where heads touch or are hidden), not a baseline; the
baseline that knows nothing of the generator is `mmemory.counting.classical`.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmemory.io import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

# Skin tones, used for heads and nothing else (saturated oranges and browns, far from the grey-beige floor).
HEAD_COLORS = ((245, 190, 140), (225, 160, 100), (190, 120, 70), (140, 85, 45))
# An RGB (Euclidean) distance: a pixel this close to a head colour is head-coloured (JPEG shifts colours a little).
HEAD_COLOR_TOLERANCE = 38.0
CLOTHING_COLORS = ((200, 30, 40), (30, 70, 200), (30, 150, 60), (120, 40, 160), (20, 150, 160), (30, 30, 35),
                   (235, 235, 240), (230, 210, 30), (230, 80, 170), (50, 50, 120))
LEG_COLORS = ((40, 40, 60), (60, 60, 70), (25, 25, 30), (70, 80, 110))
FLOOR_COLORS = ((150, 148, 140), (165, 160, 148), (138, 140, 142), (158, 155, 150))
WALL_COLOR = (96, 100, 112)
SHOP_COLORS = ((60, 90, 120), (110, 40, 110), (70, 110, 80), (180, 180, 190), (50, 50, 60))
BENCH_COLORS = ((70, 80, 95), (110, 115, 120))
PLANT_COLORS = ((40, 120, 50), (60, 150, 60))
POT_COLORS = ((80, 80, 90), (200, 200, 205))
BIN_COLORS = ((60, 65, 70), (40, 110, 150), (150, 150, 155))
DISTRACTORS = ("bench", "plant", "bin")
PALETTE_MARGIN = 1.75  # non-head colours stay this many tolerances from every head colour
MIN_HEAD_AREA = 6  # pixels: smaller head-coloured blobs are JPEG noise, not heads (a far head is ~12 px at 128x96)


def _check_palette() -> None:
    """Heads must be the only head-coloured thing in a frame (else the classical counter counts objects)."""
    others = (CLOTHING_COLORS + LEG_COLORS + FLOOR_COLORS + (WALL_COLOR,) + SHOP_COLORS + BENCH_COLORS
              + PLANT_COLORS + POT_COLORS + BIN_COLORS)
    for h in HEAD_COLORS:
        for c in others:
            d = math.dist(h, c)
            if d < PALETTE_MARGIN * HEAD_COLOR_TOLERANCE:
                raise AssertionError(f"palette: {c} is {d:.0f} from head colour {h}; keep non-head colours at least "
                                     f"{PALETTE_MARGIN * HEAD_COLOR_TOLERANCE:.0f} away")


_check_palette()


@dataclass(frozen=True)
class Figure:
    """One thing on the floor: a person or a distractor, standing at (x, y) (its feet), drawn at `scale`."""

    kind: str  # "person" or one of DISTRACTORS
    x: float
    y: float
    scale: float
    colors: tuple  # kind-specific colours (person: head, clothing, legs)


def _floor_top(h: int) -> float:
    return 0.22 * h  # the wall band ends here


def _scale_at(y: float, h: int) -> float:
    """Perspective: things at the far edge of the floor are 0.55 the size of those at the bottom of the frame."""
    t = (y - _floor_top(h)) / (h - _floor_top(h))
    return 0.55 + 0.45 * min(max(t, 0.0), 1.0)


def head_geometry(f: Figure, w: int) -> tuple[float, float, float]:
    """(centre x, centre y, radius) of a person's head, in pixels."""
    unit = w / 128.0 * f.scale
    r = 4.0 * unit * f.colors[3]
    body_h = 15.0 * unit * f.colors[3]
    return f.x, f.y - body_h - r * 0.8, r


def sample_scene(rng: random.Random, count: int, w: int, h: int, n_distractors: int,
                 min_head_gap: float = 0.85) -> list[Figure]:
    """`count` people and `n_distractors` objects at random places on the floor. Two heads are kept at least
    `min_head_gap` x (sum of radii) apart, so heads may touch (but one head never sits inside another)."""
    figs: list[Figure] = []
    heads: list[tuple[float, float, float]] = []
    y_lo = _floor_top(h) + 0.12 * h
    for _ in range(count):
        for _attempt in range(200):
            y = rng.uniform(y_lo, h - 2)
            x = rng.uniform(0.06 * w, 0.94 * w)
            size = rng.uniform(0.85, 1.15)  # people differ in size, beyond perspective
            colors = (rng.choice(HEAD_COLORS), rng.choice(CLOTHING_COLORS), rng.choice(LEG_COLORS), size)
            f = Figure("person", x, y, _scale_at(y, h), colors)
            hx, hy, r = head_geometry(f, w)
            if all(math.hypot(hx - a, hy - b) >= min_head_gap * (r + q) for a, b, q in heads):
                break
        figs.append(f)
        heads.append((hx, hy, r))
    for _ in range(n_distractors):
        kind = rng.choice(DISTRACTORS)
        y = rng.uniform(y_lo, h - 2)
        x = rng.uniform(0.05 * w, 0.95 * w)
        palette = {"bench": (BENCH_COLORS,), "plant": (PLANT_COLORS, POT_COLORS), "bin": (BIN_COLORS,)}[kind]
        figs.append(Figure(kind, x, y, _scale_at(y, h), tuple(rng.choice(p) for p in palette)))
    return figs


def _draw_floor(im: Image.Image, rng: random.Random, nrng: np.random.Generator) -> Image.Image:
    w, h = im.size
    d = ImageDraw.Draw(im)
    top = _floor_top(h)
    d.rectangle([0, 0, w, top], fill=WALL_COLOR)
    x = rng.uniform(-10, 0)
    while x < w:  # shop fronts along the wall
        sw = rng.uniform(0.18, 0.32) * w
        d.rectangle([x + 2, 0.25 * top, x + sw - 2, top], fill=rng.choice(SHOP_COLORS))
        x += sw
    floor = rng.choice(FLOOR_COLORS)
    d.rectangle([0, top, w, h], fill=floor)
    line = tuple(max(0, c - 18) for c in floor)
    vx = w / 2 + rng.uniform(-0.2, 0.2) * w  # the vanishing point of the tile seams, above the frame
    vy = top - 1.2 * h
    for k in range(-6, 15):  # seams running into the distance
        xb = k * w / 8
        xt = vx + (xb - vx) * (top - vy) / (h - vy)
        d.line([(xb, h), (xt, top)], fill=line, width=1)
    y, step = top, 0.05 * h
    while y < h:  # seams across, spaced wider towards the camera
        d.line([(0, y), (w, y)], fill=line, width=1)
        step *= 1.35
        y += step
    arr = np.asarray(im, dtype=np.int16)
    noise = nrng.normal(0, 5, size=(h, w, 1)).astype(np.int16)  # floor grain (grey, so no colour shift)
    arr = np.clip(arr + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _draw(d: ImageDraw.ImageDraw, f: Figure, w: int) -> None:
    unit = w / 128.0 * f.scale
    if f.kind == "person":
        head, cloth, legs, size = f.colors
        u = unit * size
        hx, hy, r = head_geometry(f, w)
        leg_h, body_h = 6.0 * u, 15.0 * u
        d.rectangle([f.x - 2.6 * u, f.y - leg_h, f.x - 0.4 * u, f.y], fill=legs)
        d.rectangle([f.x + 0.4 * u, f.y - leg_h, f.x + 2.6 * u, f.y], fill=legs)
        d.rounded_rectangle([f.x - 4.2 * u, f.y - body_h, f.x + 4.2 * u, f.y - leg_h + 1], radius=max(1, 2 * u),
                            fill=cloth)
        d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=head)
    elif f.kind == "bench":
        (c,) = f.colors
        d.rectangle([f.x - 11 * unit, f.y - 6 * unit, f.x + 11 * unit, f.y - 3.5 * unit], fill=c)
        d.rectangle([f.x - 10 * unit, f.y - 3.5 * unit, f.x - 8 * unit, f.y], fill=c)
        d.rectangle([f.x + 8 * unit, f.y - 3.5 * unit, f.x + 10 * unit, f.y], fill=c)
    elif f.kind == "plant":
        leaves, pot = f.colors
        d.polygon([(f.x - 3.5 * unit, f.y - 7 * unit), (f.x + 3.5 * unit, f.y - 7 * unit),
                   (f.x + 2.5 * unit, f.y), (f.x - 2.5 * unit, f.y)], fill=pot)
        d.ellipse([f.x - 6 * unit, f.y - 19 * unit, f.x + 6 * unit, f.y - 6 * unit], fill=leaves)
    else:  # bin
        (c,) = f.colors
        d.rectangle([f.x - 3.5 * unit, f.y - 10 * unit, f.x + 3.5 * unit, f.y], fill=c)
        d.rectangle([f.x - 4.2 * unit, f.y - 11 * unit, f.x + 4.2 * unit, f.y - 9.5 * unit], fill=(35, 35, 40))


def render(figs: list[Figure], size: tuple[int, int], rng: random.Random, nrng: np.random.Generator) -> Image.Image:
    """The frame: floor, then every figure back to front (by the y of its feet)."""
    im = _draw_floor(Image.new("RGB", size), rng, nrng)
    d = ImageDraw.Draw(im)
    for f in sorted(figs, key=lambda f: f.y):
        _draw(d, f, size[0])
    return im


def toy_frame(seed: int, frame_id: int, count: int, image_size: tuple[int, int] = (128, 96),
              max_distractors: int = 4) -> Image.Image:
    """One frame with `count` people, deterministic by (seed, frame_id)."""
    rng = random.Random(f"counting-toy|{seed}|{frame_id}")
    nrng = np.random.default_rng(rng.getrandbits(63))
    w, h = image_size
    figs = sample_scene(rng, count, w, h, rng.randint(0, max_distractors))
    return render(figs, (w, h), rng, nrng)


def make_toy_counting(out_root: str | Path, n: int = 600, seed: int = 0, image_size: tuple[int, int] = (128, 96),
                      max_count: int = 15, max_distractors: int = 4, jpeg_quality: int = 92) -> list[tuple[int, int]]:
    """Write `n` toy frames in the Mall layout under `out_root`: `frames/seq_000001.jpg` ... and `labels.csv`
    (`id,count`). Counts are uniform on 0..max_count. Returns [(id, count)]. Deterministic by seed."""
    if n < 1 or max_count < 0:
        raise ValueError(f"make_toy_counting: n must be >= 1 and max_count >= 0; got n={n}, max_count={max_count}")
    w, h = (int(v) for v in image_size)
    out_root = Path(out_root)
    frames = out_root / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"counting-toy-counts|{seed}")
    counts = [rng.randint(0, max_count) for _ in range(n)]
    t0 = time.perf_counter()
    rows = []
    for frame_id, count in enumerate(counts, start=1):
        im = toy_frame(seed, frame_id, count, (w, h), max_distractors)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=jpeg_quality)
        atomic_write_bytes(frames / f"seq_{frame_id:06d}.jpg", buf.getvalue())
        rows.append((frame_id, count))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["id", "count"])
    writer.writerows(rows)
    atomic_write_text(out_root / "labels.csv", text.getvalue())
    dt = time.perf_counter() - t0
    logger.info("toy counting: %d frames of %dx%d in %.2fs (%.0f frames/s), counts 0..%d", n, w, h, dt,
                n / max(dt, 1e-9), max_count)
    return rows


# ------------------------------------------------------------------------------------------- classical counter

def head_mask(image: Image.Image | np.ndarray, tolerance: float = HEAD_COLOR_TOLERANCE) -> np.ndarray:
    """Pixels within `tolerance` (RGB distance) of one of the head colours."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    palette = np.asarray(HEAD_COLORS, dtype=np.float32)
    dist = np.sqrt(((arr[:, :, None, :] - palette[None, None]) ** 2).sum(-1)).min(-1)
    return dist <= tolerance


def count_heads_classical(image: Image.Image | np.ndarray | str | Path, min_area: int = MIN_HEAD_AREA,
                          tolerance: float = HEAD_COLOR_TOLERANCE) -> int:
    """People in a toy frame, counted as 8-connected components of head-coloured pixels of at least `min_area`
    pixels (scipy.ndimage.label). It knows the generator's head colours (`HEAD_COLORS`, used for nothing else), so
    it is an oracle reference: touching heads merge into one component and a hidden head is missed, so even it
    undercounts crowded frames."""
    from scipy import ndimage

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            image = im.convert("RGB")
    labels, n = ndimage.label(head_mask(image, tolerance), structure=np.ones((3, 3), dtype=int))
    if n == 0:
        return 0
    areas = np.bincount(labels.ravel())[1:]
    return int((areas >= min_area).sum())
