"""Shared synthetic fixtures for the EMR tests: a tiny tokenizer, a tiny CLIP, tiny images, a tiny VisDial split."""
from __future__ import annotations

import json
from pathlib import Path

from mmemory.toy.models import ToySizes, build_tiny_clip, build_tiny_llama, train_tokenizer
from _toy import prepared_toy

SIZES = ToySizes(vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, vision_hidden_size=32,
                 vision_patch_size=8, mm_tokens_per_image=4, image_size=32)


# a tiny bridge and a one-epoch run, shared by the EMR training tests
BRIDGE = dict(embed_dim=32, hidden_size=16, num_query_tokens=2, qformer_hidden_size=16, qformer_layers=1,
              qformer_heads=2, qformer_intermediate_size=32, cross_attention_frequency=1, memory_bank_length=3,
              qformer_initializer_range=0.1,
              trainable=["imagebind_fc", "ln_vision", "turn_pe", "query_tokens", "qformer", "llm_proj"])
TRAIN = dict(caption_epochs=0, epochs=1, batch_size=4, lr=1e-3, llm_lr=None, warmup_steps=0, eval_every=1, ckpt_every=1,
             val_dialogs=2, seed=0)

def make_toy_world(root: Path, n_train: int = 12, n_val: int = 4) -> dict:
    """Toy VisDial (train/val JSON with image_path), a tokenizer, a tiny CLIP and a tiny Llama under `root`."""
    root = Path(root)
    paths = prepared_toy(root, n_train, n_val, image_size=SIZES.image_size, seed=0)
    corpus = []
    for split in ("train", "val"):
        data = json.loads(paths[split].read_text())["data"]
        corpus += data["questions"] + data["answers"] + [d["caption"] for d in data["dialogs"]]
    corpus += ["question: answer:"] * 5
    tok = train_tokenizer(corpus, SIZES.vocab_size, root / "tokenizer")
    build_tiny_clip(tok, SIZES, root / "clip", seed=0)
    build_tiny_llama(tok, SIZES, root / "llm", seed=0)
    paths.update(clip=root / "clip", llm=root / "llm", tokenizer=root / "tokenizer")
    return {k: str(v) for k, v in paths.items()}


def embedded_toy_world(root: Path, n_train: int = 12, n_val: int = 4, shard_size: int = 16) -> dict:
    """`make_toy_world` plus the train and val embedding shards of its tiny CLIP (keys train_emb, val_emb)."""
    from mmemory.emr.data import extract_split
    from mmemory.encoders import load_encoder

    w = make_toy_world(root, n_train=n_train, n_val=n_val)
    enc = load_encoder("clip", w["clip"])
    for split in ("train", "val"):
        w[f"{split}_emb"] = str(Path(root) / "emb" / split)
        extract_split(w[split], w[f"{split}_emb"], enc, shard_size=shard_size)
    return w
