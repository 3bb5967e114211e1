"""EMR data: embedding keys for a VisDial split, extraction into shards, and dialogue records for training/eval.

Keys: `image/<image_id>` (one per image) and `question/<image_id>/<round>` (one per dialogue round, 1-based).
A record is one dialogue: its image key, per-round question keys and texts, and per-round TARGET = the round's
answer (the seeds trained on `answer_text = question_text`; here the target is the answer, pinned by a test).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmemory.config import StrictConfig
from mmemory.encoders import Encoder, ImageError
from mmemory.fingerprint import file_digest
from mmemory.shards import EncodedBatch, ShardedEmbeddings, write_shards
from mmemory.visdial import VisDialSplit, load_visdial

logger = logging.getLogger(__name__)


@dataclass
class EmrEncoderConfig(StrictConfig):
    """config emr.encoder: what embeds the images and questions (defaults: config.yaml's)."""

    SECTION = "emr.encoder"

    kind: str = "clip"  # clip (transformers CLIPModel) | imagebind (envs/imagebind.yaml)
    checkpoint: str | None = None  # imagebind: imagebind_huge.pth; clip: None = models.clip (toy: train_toy_clip)
    batch_size: int = 64  # items per encoder forward pass


@dataclass
class ExtractConfig(StrictConfig):
    """config emr.extract: how the embeddings are written (defaults: config.yaml's)."""

    SECTION = "emr.extract"

    shard_size: int = 1024  # items per safetensors shard (paper: 10000)
    on_bad_image: str = "error"  # error: stop, naming the file | quarantine: leave it out, list and count it


def image_key(image_id) -> str:
    return f"image/{image_id}"


def question_key(image_id, rnd: int) -> str:
    return f"question/{image_id}/{rnd}"


def embedding_items(split: VisDialSplit) -> tuple[dict[str, str], dict[str, str]]:
    """({image key: image path}, {question key: question text}) for every dialogue of a split."""
    images, questions = {}, {}
    for d in split.dialogs:
        if not d.get("image_path"):
            raise ValueError(f"{split.path}: dialog image_id={d['image_id']} has no image_path; run rule "
                             f"prepare_data, which resolves images")
        images[image_key(d["image_id"])] = d["image_path"]
        for r, rnd in enumerate(d["dialog"], 1):
            questions[question_key(d["image_id"], r)] = split.question(rnd)
    return images, questions


def extract_split(split_json: str | Path, out_dir: str | Path, encoder: Encoder, shard_size: int,
                  on_bad_image: str = ExtractConfig.on_bad_image) -> dict:
    """Encode one split's images and questions into shards under out_dir; returns the index summary."""
    if on_bad_image not in ("error", "quarantine"):
        raise ValueError(f"emr.extract.on_bad_image must be 'error' or 'quarantine', got {on_bad_image!r}")
    split = load_visdial(split_json)
    images, questions = embedding_items(split)
    items = {**images, **questions}

    def encode(keys: list[str]) -> EncodedBatch:
        img_keys = [k for k in keys if k.startswith("image/")]
        q_keys = [k for k in keys if not k.startswith("image/")]
        rows, kept, quarantined = [], [], []
        if img_keys:
            try:
                rows.append(encoder.encode_images([items[k] for k in img_keys]))
                kept += img_keys
            except ImageError:
                if on_bad_image == "error":
                    raise
                for k in img_keys:  # find the bad ones one by one; keep the rest
                    try:
                        rows.append(encoder.encode_images([items[k]]))
                        kept.append(k)
                    except ImageError as e:
                        logger.warning("quarantined %s: %s", k, e)
                        quarantined.append({"key": k, "path": items[k], "reason": str(e)})
        if q_keys:
            texts = [items[k] for k in q_keys]
            uniq = list(dict.fromkeys(texts))  # questions repeat across dialogues: encode each text once
            emb = encoder.encode_texts(uniq)
            pos = {t: i for i, t in enumerate(uniq)}
            rows.append(emb[[pos[t] for t in texts]])
            kept += q_keys
        emb = np.concatenate(rows) if rows else np.zeros((0, encoder.dim), np.float32)
        return EncodedBatch(emb, kept, quarantined)

    # what each key embeds (the question's text, the image file's bytes): the same keys with other content re-encode
    contents = {**{k: file_digest(p) if Path(p).is_file() else "missing" for k, p in images.items()}, **questions}
    index = write_shards(out_dir, list(items), encode, shard_size, encoder.fingerprint,
                         desc=f"extract {split.split}", contents=contents,
                         models={"encoder": getattr(encoder, "path", None)})
    return {k: index[k] for k in ("n_items", "n_requested", "n_quarantined", "dim")} | {
        "n_images": len(images), "n_questions": len(questions), "n_shards": len(index["shards"])}


@dataclass
class DialogRecord:
    """One dialogue for EMR: everything a round needs, with the answer as the target."""

    image_id: int
    image_key: str
    question_keys: list[str]
    questions: list[str]
    answers: list[str]  # the targets
    options: list[list[str]]  # per round, the answer options (VisDial: 100)
    gt_index: list[int]
    caption: str = ""  # the image's caption: the target of the bridge's captioning pre-training, never a prompt


def dialog_records(split: VisDialSplit, emb: ShardedEmbeddings) -> tuple[list[DialogRecord], int]:
    """Records for every dialogue whose image was embedded; dialogues with a quarantined image are skipped and
    counted (never zero-filled). A missing question embedding is an error."""
    records, skipped = [], 0
    for d in split.dialogs:
        ik = image_key(d["image_id"])
        if ik not in emb:
            if ik in emb.quarantined:
                skipped += 1
                continue
            raise KeyError(f"{emb.index_path}: no embedding for {ik!r} (dialog image_id={d['image_id']} of "
                           f"{split.path}); re-run rule extract_embeddings")
        qk = [question_key(d["image_id"], r) for r in range(1, len(d["dialog"]) + 1)]
        for k in qk:
            emb.locate(k)  # raises with a clear message if absent
        records.append(DialogRecord(
            image_id=d["image_id"], image_key=ik, question_keys=qk,
            questions=[split.question(r) for r in d["dialog"]],
            answers=[split.answer(r) for r in d["dialog"]],
            options=[[split.answers[o] for o in r.get("answer_options", [])] for r in d["dialog"]],
            gt_index=[r.get("gt_index", -1) for r in d["dialog"]],
            caption=d.get("caption", ""),
        ))
    if skipped:
        logger.warning("%s: %d dialogues skipped because their image was quarantined", split.path, skipped)
    return records, skipped


def batch_embeddings(records: list[DialogRecord], emb: ShardedEmbeddings, device="cpu"):
    """image_emb [B, D] and question_emb [B, R, D] tensors for dialogues with the same number of rounds."""
    R = len(records[0].question_keys)
    if any(len(r.question_keys) != R for r in records):
        raise ValueError("a batch must hold dialogues with the same number of rounds; bucket them by length")
    img = torch.from_numpy(emb.get_many([r.image_key for r in records])).to(device)
    q = torch.from_numpy(emb.get_many([k for r in records for k in r.question_keys])).to(device)
    return img, q.view(len(records), R, -1)


def length_buckets(records: list[DialogRecord], batch_size: int, rng: np.random.Generator | None = None):
    """Batches of record indices with equal round counts, shuffled when rng is given (deterministic per rng)."""
    by_len: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_len.setdefault(len(r.question_keys), []).append(i)
    batches = []
    for _, idx in sorted(by_len.items()):
        idx = list(rng.permutation(idx)) if rng is not None else idx
        batches += [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
