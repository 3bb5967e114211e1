"""Render a deterministic toy VisDial v1.0 dataset: images of coloured shapes, captions, 10-round dialogues
whose answers follow from the image, 100 answer options per round and dense relevance annotations for val and test.

The files are written in the exact VisDial v1.0 schema, so they go through the same reader as real data.

**Users and earlier pictures (the memory positive control).** Consecutive dialogues belong to one toy user,
`dialogs_per_user` at a time; each dialogue is one of that user's sessions and shows one picture. From a user's second
session on, with probability `memory_share`, the LAST question of a dialogue asks about one of that user's EARLIER
pictures, not the one in front of it: "in the earlier picture, where was the green triangle?". The object is in
exactly one of the user's pictures so far, the current one included, so the question has one answer (its place,
which that picture's caption names), and only a memory of the earlier picture gives it. Each toy dialogue carries an extra key
(ignored by VisDial readers) `"memory": {"user": "test-u003", "asks_about": <earlier image_id> or null}`; the memory
stage chains a user's dialogues by it and the reminder stage scores current- and earlier-picture questions apart.

Train, val and test are disjoint by *content*: every possible scene (its set of coloured shapes and their places)
belongs to exactly one split, chosen by a seeded hash of the scene (`scene_split`), so no image and no
(image, question, answer) triple of one split appears in another. Within a split a scene may repeat.
"""
from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw
from tqdm import tqdm

from mmemory.config import StrictConfig
from mmemory.io import atomic_write_json
from mmemory.prepare import DataConfig

logger = logging.getLogger(__name__)

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (140, 60, 180),
    "orange": (240, 140, 30),
}
SHAPES = ("circle", "square", "triangle")
NUMBERS = ("zero", "one", "two", "three", "four")
COLS = ("left", "center", "right")
ROWS = ("top", "middle", "bottom")


@dataclass(frozen=True)
class Obj:
    color: str
    shape: str
    row: int
    col: int

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def where(self) -> str:
        if self.row == 1 and self.col == 1:
            return "in the center"
        if self.row == 1:
            return f"on the {COLS[self.col]}"
        if self.col == 1:
            return f"at the {ROWS[self.row]}"
        return f"at the {ROWS[self.row]} {COLS[self.col]}"


def sample_scene(rng: random.Random, max_objects: int) -> list[Obj]:
    """A few objects with distinct (colour, shape) pairs in distinct grid cells."""
    n = rng.randint(1, max_objects)
    cells = rng.sample([(r, c) for r in range(3) for c in range(3)], n)
    kinds = rng.sample([(c, s) for c in COLORS for s in SHAPES], n)
    return [Obj(c, s, r, col) for (c, s), (r, col) in zip(kinds, cells)]


SPLITS = ("train", "val", "test")
FIRST_IMAGE_ID = {"train": 1, "val": 1_000_000, "test": 2_000_000}


def scene_key(objs: list[Obj]) -> str:
    """A canonical name of a scene: its objects, sorted (two scenes with the same key render the same image)."""
    return ";".join(sorted(f"{o.color} {o.shape} {o.row}{o.col}" for o in objs))


def scene_split(objs: list[Obj], shares: dict[str, float], seed: int) -> str:
    """The one split a scene belongs to: a seeded hash of its key, cut in proportion to the split sizes."""
    h = int.from_bytes(hashlib.blake2b(f"{seed}|{scene_key(objs)}".encode(), digest_size=8).digest(), "big")
    u, total, acc = h / 2 ** 64, sum(shares.values()), 0.0
    for split, share in shares.items():
        acc += share / total
        if u < acc:
            return split
    return list(shares)[-1]


def render(objs: list[Obj], size: int) -> Image.Image:
    """Draw the scene on a light-grey canvas, one object per 3x3 grid cell."""
    im = Image.new("RGB", (size, size), (235, 235, 235))
    draw = ImageDraw.Draw(im)
    cell = size / 3
    pad = cell * 0.15
    for o in objs:
        x0, y0 = o.col * cell + pad, o.row * cell + pad
        x1, y1 = (o.col + 1) * cell - pad, (o.row + 1) * cell - pad
        fill = COLORS[o.color]
        if o.shape == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        elif o.shape == "square":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return im


def caption(objs: list[Obj]) -> str:
    """"a picture of a red circle at the top left and a blue square in the center": every object with its place,
    so that a caption-trained encoder (the toy CLIP) and the bridge's captioning pre-training learn positions too."""
    names = [f"a {o.name} {o.where}" for o in objs]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"a picture of {listed}"


def _plural(shape: str, n: int) -> str:
    return shape if n == 1 else shape + "s"


def qa_pool(objs: list[Obj], rng: random.Random) -> list[tuple[str, str]]:
    """All question/answer pairs whose answers follow from the scene."""
    present = {(o.color, o.shape) for o in objs}
    pairs = [("how many shapes are there?", NUMBERS[len(objs)])]
    for o in objs:
        pairs += [
            (f"what color is the {o.shape}?", o.color) if sum(p.shape == o.shape for p in objs) == 1 else None,
            (f"what shape is the {o.color} object?", f"a {o.shape}")
            if sum(p.color == o.color for p in objs) == 1 else None,
            (f"where is the {o.name}?", o.where),
            (f"is there a {o.name}?", "yes"),
        ]
    for shape in SHAPES:
        n = sum(o.shape == shape for o in objs)
        pairs.append((f"how many {shape}s are there?", NUMBERS[n]))
        pairs.append((f"are there any {shape}s?", f"yes, {NUMBERS[n]}" if n else "no"))
    for color in COLORS:
        n = sum(o.color == color for o in objs)
        pairs.append((f"is anything {color}?", f"yes, the {next(o.shape for o in objs if o.color == color)}"
                      if n else "no"))
    for _ in range(3):
        c, s = rng.choice(list(COLORS)), rng.choice(SHAPES)
        if (c, s) not in present:
            pairs.append((f"is there a {c} {s}?", "no"))
    unique = dict(p for p in pairs if p is not None)  # one answer per question: no round is asked twice
    return list(unique.items())


def earlier_question(name: str) -> str:
    """The question about an object of an earlier picture. The cue comes first, so that the object's name is the
    question's last words: a reader that finds the name among its notes and copies what follows it there does not
    find the question's own continuation (" in the earlier picture") instead of a place (" in the center")."""
    return f"in the earlier picture, where was the {name}?"


def earlier_picture_question(earlier: list[list[Obj]], current: list[Obj], rng: random.Random,
                             asked: set[str] = frozenset()) -> tuple[int, str, str] | None:
    """(index into `earlier`, question, answer): "in the earlier picture, where was the green triangle?" about an
    object that is in exactly one of the user's pictures so far (not in any other earlier picture, nor in the current
    one), which the user has not asked about before (`asked`); the answer is its place ("at the top left"), which the
    picture's caption names. None when no earlier object qualifies."""
    pictures = earlier + [current]
    options = [(e, o) for e, objs in enumerate(earlier) for o in objs
               if sum(any(p.name == o.name for p in pic) for pic in pictures) == 1]
    options = [(e, o) for e, o in options if earlier_question(o.name) not in asked]
    if not options:
        return None
    e, o = rng.choice(options)
    return e, earlier_question(o.name), o.where


def answer_vocabulary() -> list[str]:
    """Every answer the generator can produce plus distractors: the pool that answer options are drawn from."""
    vocab = ["yes", "no", *NUMBERS, *COLORS, *(f"a {s}" for s in SHAPES)]
    vocab += [f"yes, {n}" for n in NUMBERS[1:]]
    vocab += [f"yes, the {s}" for s in SHAPES]
    vocab += [Obj("red", "circle", r, c).where for r in range(3) for c in range(3)]
    vocab += [f"a {c} {s}" for c in COLORS for s in SHAPES]
    vocab += [f"i think it is {c}" for c in COLORS]
    vocab += [f"{n} {_plural(s, 2)}" for n in NUMBERS[2:] for s in SHAPES]
    vocab += ["i can not tell", "maybe", "not sure", "i don't think so", "probably", "none", "all of them"]
    vocab += [f"{a} and {b}" for i, a in enumerate(COLORS) for b in list(COLORS)[i + 1:]]
    vocab += [f"it is {c}" for c in COLORS] + [f"a {c} one" for c in COLORS]
    vocab += [f"on the {c} side" for c in ("left", "right")]
    return list(dict.fromkeys(vocab))


def _relevance(option: str, gt: str) -> float:
    """Toy dense relevance: 1 for the answer, 0.5 for an option of the same kind (a colour for a colour), else 0."""
    if option == gt:
        return 1.0
    kinds = [set(COLORS), set(NUMBERS), {"yes", "no"}, {f"a {s}" for s in SHAPES}]
    return 0.5 if any(option in k and gt in k for k in kinds) else 0.0


def make_split(
    split: str, n_dialogs: int, first_image_id: int, out_dir: Path, image_size: int,
    rounds: int, n_options: int, max_objects: int, seed: int, shares: dict[str, float] | None = None,
    dialogs_per_user: int = 8, memory_share: float = 0.0,
) -> tuple[dict, list[dict]]:
    """Render one split's images and return (VisDial JSON, dense annotations). With `shares` (split -> size),
    only scenes that `scene_split` assigns to `split` are drawn, so the splits never share a scene. Dialogues are
    grouped into users and some last questions ask about an earlier picture (module docstring)."""
    rng = random.Random(f"{seed}-{split}")
    img_dir = out_dir / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    questions: dict[str, int] = {}
    answers = {a: i for i, a in enumerate(answer_vocabulary())}
    if len(answers) < n_options:
        raise ValueError(f"toy answer vocabulary has {len(answers)} answers, fewer than n_options={n_options}")
    dialogs, dense = [], []
    user_scenes: list[list[Obj]] = []
    for k in tqdm(range(n_dialogs), desc=f"toy VisDial {split}", unit="dialog"):
        image_id = first_image_id + k
        objs = sample_scene(rng, max_objects)
        while shares and scene_split(objs, shares, seed) != split:
            objs = sample_scene(rng, max_objects)
        render(objs, image_size).save(img_dir / f"toy_{split}_{image_id:012d}.png")
        pool = qa_pool(objs, rng)
        chosen = rng.sample(pool, rounds) if len(pool) >= rounds else [rng.choice(pool) for _ in range(rounds)]
        if k % dialogs_per_user == 0:
            user_scenes, user_asked = [], set()
        asks_about = None
        if user_scenes and rng.random() < memory_share:
            found = earlier_picture_question(user_scenes, objs, rng, asked=user_asked)
            if found is not None:
                e, q, a = found
                user_asked.add(q)
                asks_about = image_id - len(user_scenes) + e
                chosen = [p for p in chosen if p[0] != q][: rounds - 1] + [(q, a)]
        user_scenes.append(objs)
        dialog = []
        for q, a in chosen:
            qi = questions.setdefault(q, len(questions))
            ai = answers[a]
            distractors = rng.sample([i for i in answers.values() if i != ai], n_options - 1)
            gt_index = rng.randrange(n_options)
            options = distractors[:gt_index] + [ai] + distractors[gt_index:]
            dialog.append({"question": qi, "answer": ai, "answer_options": options, "gt_index": gt_index})
        dialogs.append({"image_id": image_id, "caption": caption(objs), "dialog": dialog,
                        "memory": {"user": f"{split}-u{k // dialogs_per_user:03d}", "asks_about": asks_about}})
        rnd = rng.randrange(rounds)
        inv = {i: a for a, i in answers.items()}
        gt = inv[dialog[rnd]["answer"]]
        dense.append({
            "image_id": image_id, "round_id": rnd + 1,
            "gt_relevance": [_relevance(inv[o], gt) for o in dialog[rnd]["answer_options"]],
        })
    visdial = {
        "version": "1.0", "split": split,
        "data": {"questions": list(questions), "answers": list(answers), "dialogs": dialogs},
    }
    return visdial, dense


@dataclass
class ToyVisDialConfig(StrictConfig):
    """config data.toy: the size and shape of the rendered toy VisDial (defaults: config.yaml's)."""

    SECTION = "data.toy"

    n_train: int = 400  # training dialogues (one image each)
    n_val: int = 80  # validation dialogues: for choosing settings
    n_test: int = 120  # test dialogues: the report's tables
    image_size: int = 64  # side of the square PNG images, in pixels
    rounds: int = 10  # question/answer rounds per dialogue (VisDial: 10)
    max_objects: int = 3  # at most this many coloured shapes per image
    dialogs_per_user: int = 8  # consecutive dialogues of one toy user (one picture per session)
    memory_share: float = 0.6  # share of a user's dialogues (from the second on) whose last question asks about an
    #                            earlier picture of that user (0: none)


def build_toy_visdial(out_dir: str | Path, n_train: int, n_val: int, n_test: int | None = None,
                      image_size: int = ToyVisDialConfig.image_size, rounds: int = ToyVisDialConfig.rounds,
                      n_options: int = DataConfig.n_options, max_objects: int = ToyVisDialConfig.max_objects,
                      seed: int = 0, dialogs_per_user: int = ToyVisDialConfig.dialogs_per_user,
                      memory_share: float = ToyVisDialConfig.memory_share) -> dict:
    """Write visdial_1.0_{train,val,test}.json, val and test dense annotations and the images under `out_dir`.
    The three splits are disjoint by scene (`scene_split`); n_test defaults to n_val. `dialogs_per_user` and
    `memory_share` make the earlier-picture questions (module docstring; memory_share 0: none)."""
    out_dir = Path(out_dir)
    sizes = {"train": n_train, "val": n_val, "test": n_val if n_test is None else n_test}
    shares = {k: max(v, 1) for k, v in sizes.items()}
    for split, n in sizes.items():
        visdial, dense = make_split(split, n, FIRST_IMAGE_ID[split], out_dir, image_size, rounds, n_options,
                                    max_objects, seed, shares, dialogs_per_user, memory_share)
        atomic_write_json(out_dir / f"visdial_1.0_{split}.json", visdial)
        if split != "train":
            atomic_write_json(out_dir / f"visdial_1.0_{split}_dense_annotations.json", dense)
    logger.info("toy VisDial written to %s: %s (disjoint by scene)", out_dir, sizes)
    return sizes
