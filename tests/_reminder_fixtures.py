"""Synthetic fixtures for the <reminder> tests: a toy VisDial split with images, a tiny Gemma-3 + processor."""
from __future__ import annotations

from pathlib import Path

from _toy import prepared_toy

from mmemory.toy.models import ToySizes, build_tiny_gemma3, toy_corpus, train_tokenizer

SIZES = ToySizes(vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, vision_hidden_size=32,
                 vision_patch_size=8, mm_tokens_per_image=4, image_size=32)
PROMPTS = {"instruction": str(Path(__file__).resolve().parents[1] / "resources/prompts/reminder_system.txt"),
           "fewshot": str(Path(__file__).resolve().parents[1] / "resources/prompts/reminder_fewshot.json"),
           "max_fewshot": 1}


_WORLDS: dict = {}


def shared_world(n_train: int = 8, n_val: int = 4) -> dict:
    """One world per test session (built on first use in a temp dir): tests must not modify its files."""
    key = (n_train, n_val)
    if key not in _WORLDS:
        import tempfile

        _WORLDS[key] = make_reminder_world(Path(tempfile.mkdtemp(prefix="reminder_world_")), n_train, n_val)
    return _WORLDS[key]


def make_reminder_world(root: Path, n_train: int = 8, n_val: int = 4, with_model: bool = True) -> dict:
    """Toy train/val VisDial JSON (dialogues carry image_path), dense annotations and a tiny Gemma-3 under root."""
    root = Path(root)
    paths = prepared_toy(root, n_train, n_val, image_size=SIZES.image_size, seed=3)
    if with_model:
        tok = train_tokenizer(toy_corpus([paths["train"]]) + ["<reminder> </reminder> Turn Now"],
                              SIZES.vocab_size, root / "tokenizer")
        build_tiny_gemma3(tok, SIZES, root / "vlm", seed=0)
        paths["vlm"] = root / "vlm"
    return {k: str(v) for k, v in paths.items()}
