"""Encoders behind one interface: `encode_images(paths) -> [N, D]`, `encode_texts(texts) -> [N, D]`, `.dim`.

    from mmemory.encoders import load_encoder
    enc = load_encoder("clip", "path/to/clip")                  # any local CLIP checkpoint (the toy one too)
    enc = load_encoder("imagebind", checkpoint="imagebind_huge.pth", device="cuda")
    enc = load_encoder("minilm")                                # text only (the packaged all-MiniLM-L6-v2)

Kinds:
- `imagebind`: the real ImageBind API (`imagebind_huge`, `ModalityType.VISION/TEXT`, its own transforms). It runs in
  the env `envs/imagebind.yaml`; its checkpoint (`imagebind_huge.pth`) comes from config (`emr.encoder.checkpoint`).
- `clip`: transformers `CLIPModel` from any local directory or checkpoint (the toy CLIP and real ones share this code).
- `minilm`: all-MiniLM-L6-v2 through `AutoModel` with mean pooling; text only.

All embeddings are float32 numpy arrays, L2-normalised unless `normalize=False`. Images are opened with PIL; an
unreadable image raises `ImageError` naming the file (callers decide whether to stop or quarantine it).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

ENCODER_KINDS = ("imagebind", "clip", "minilm")


class ImageError(ValueError):
    """An image that cannot be opened or decoded; `.path` names it."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        super().__init__(f"{path}: cannot read image ({reason}). Replace the file, or set "
                         f"emr.extract.on_bad_image: quarantine to skip it and count it in the metrics.")


def open_image(path: str | Path):
    """Open an image as RGB, fully decoded; a corrupt or missing file raises `ImageError`."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises these for missing, truncated or unknown files
        raise ImageError(path, f"{type(e).__name__}: {e}") from e


def weights_id(path: str | Path) -> str:
    """A short digest of a checkpoint file or directory's files (name, size, mtime); '' when it is not local."""
    import hashlib

    p = Path(path) if path else None
    if not p or not p.exists():
        return ""
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


class Encoder:
    """Base class: batching, normalisation and numpy conversion. Subclasses implement `_images` / `_texts`."""

    kind: str = ""
    dim: int = 0

    def __init__(self, device: str = "cpu", batch_size: int = 64, normalize: bool = True):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.normalize = normalize

    @property
    def fingerprint(self) -> str:
        """Identifies the encoder and its weights (path plus the files' sizes and modification times): stored with
        every shard, so that retrained or replaced weights at the same path are noticed and re-encoded."""
        path = getattr(self, "path", "")
        return f"{self.kind}:{path}:{self.dim}:{'norm' if self.normalize else 'raw'}:{weights_id(path)}"

    def _images(self, images: list) -> torch.Tensor:
        raise NotImplementedError(f"the {self.kind!r} encoder has no image tower")

    def _texts(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError(f"the {self.kind!r} encoder has no text tower")

    def _batched(self, items: Sequence, fn) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(items), self.batch_size):
                emb = fn(list(items[i:i + self.batch_size]))
                if self.normalize:
                    emb = _normalize(emb)
                out.append(emb.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def encode_images(self, paths: Sequence[str | Path]) -> np.ndarray:
        """Image files -> [N, dim] float32."""
        return self._batched([str(p) for p in paths], self._images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> [N, dim] float32."""
        return self._batched([str(t) for t in texts], self._texts)


class ClipEncoder(Encoder):
    """transformers `CLIPModel` + its image processor and tokenizer, from a local directory or checkpoint."""

    kind = "clip"

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 64, normalize: bool = True):
        super().__init__(device, batch_size, normalize)
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.path = str(path)
        try:
            self.model = CLIPModel.from_pretrained(self.path).to(self.device).eval()
            self.processor = AutoImageProcessor.from_pretrained(self.path)
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        except OSError as e:
            raise FileNotFoundError(f"cannot load a CLIP model from {self.path!r} ({e}). Give a local directory "
                                    f"with config.json, weights, preprocessor_config.json and a tokenizer "
                                    f"(config models.clip; the toy one is built by rule "
                                    f"train_toy_clip)") from e
        self.dim = int(self.model.config.projection_dim)
        self.max_length = int(self.model.config.text_config.max_position_embeddings)

    def pixel_values(self, images: list) -> torch.Tensor:
        return self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)

    def _images(self, paths: list[str]) -> torch.Tensor:
        return image_features(self.model, self.pixel_values([open_image(p) for p in paths]))

    def _texts(self, texts: list[str]) -> torch.Tensor:
        ids, mask = clip_text_inputs(self.tokenizer, texts, self.max_length)
        return text_features(self.model, ids.to(self.device), mask.to(self.device))


def clip_text_inputs(tokenizer, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ending in EOS, right-padded. CLIP pools the text at its EOS token, so the EOS must be there:
    real CLIP tokenizers add it; tokenizers without a post-processor (the toy BPE) get it appended here."""
    eos = tokenizer.eos_token_id
    rows = []
    for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]:
        ids = list(ids)
        if ids and ids[-1] == eos:
            ids = ids[:-1]
        rows.append(ids[:max_length - 1] + [eos])
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return input_ids, mask


def _pooled(out) -> torch.Tensor:
    # transformers >= 5 returns a ModelOutput whose pooler_output holds the projected features; 4.x a tensor.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected CLIP image features (unnormalised)."""
    return _pooled(model.get_image_features(pixel_values=pixel_values))


def text_features(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Projected CLIP text features (unnormalised)."""
    return _pooled(model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 (or any BERT-like sentence encoder) with attention-masked mean pooling; text only."""

    kind = "minilm"

    def __init__(self, path: str | Path | None = None, device: str = "cpu", batch_size: int = 64,
                 normalize: bool = True, max_length: int = 256):
        super().__init__(device, batch_size, normalize)
        from transformers import AutoModel, AutoTokenizer

        from mmemory.minilm import minilm_path

        self.path = str(path or minilm_path())
        self.model = AutoModel.from_pretrained(self.path).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.dim = int(self.model.config.hidden_size)
        self.max_length = max_length

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> [N, dim] float32, batched by token length (short texts are not padded to long ones' length);
        rows come back in the input order."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        out[order] = self._batched([texts[i] for i in order], self._texts)
        return out

    def _texts(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        hidden = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def _images(self, paths):
        raise NotImplementedError("minilm is a text-only encoder: use kind 'clip' or 'imagebind' for images")


IMAGEBIND_HELP = (
    "ImageBind runs in its own conda env: `conda env create -f envs/imagebind.yaml` (or snakemake --use-conda), "
    "and needs the checkpoint imagebind_huge.pth (https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth; "
    "CC-BY-NC-SA 4.0) at the path set in config emr.encoder.checkpoint."
)


class ImageBindEncoder(Encoder):
    """ImageBind-Huge (1024-d joint space) through the upstream package; vision and text modalities."""

    kind = "imagebind"

    def __init__(self, checkpoint: str | Path | None, device: str = "cpu", batch_size: int = 32,
                 normalize: bool = True):
        super().__init__(device, batch_size, normalize)
        try:
            from imagebind import data as ib_data
            from imagebind.models import imagebind_model
            from imagebind.models.imagebind_model import ModalityType
        except ImportError as e:
            raise ImportError(f"the imagebind package is not importable ({e}). {IMAGEBIND_HELP}") from e
        if not checkpoint or not Path(checkpoint).is_file():
            raise FileNotFoundError(f"ImageBind checkpoint not found: {checkpoint!r}. {IMAGEBIND_HELP}")
        self.path = str(checkpoint)
        self._data, self._modality = ib_data, ModalityType
        model = imagebind_model.imagebind_huge(pretrained=False)  # never downloads; weights come from config
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self.model = model.to(self.device).eval()
        self.dim = 1024
        logger.info("ImageBind-Huge loaded from %s", self.path)

    def _images(self, paths: list[str]) -> torch.Tensor:
        for p in paths:  # a clear error (or quarantine upstream) before ImageBind's own transforms see the file
            open_image(p)
        x = self._data.load_and_transform_vision_data(paths, self.device)
        return self.model({self._modality.VISION: x})[self._modality.VISION]

    def _texts(self, texts: list[str]) -> torch.Tensor:
        x = self._data.load_and_transform_text(texts, self.device)
        return self.model({self._modality.TEXT: x})[self._modality.TEXT]


def load_encoder(kind: str, path: str | Path | None = None, device: str = "cpu", **kw) -> Encoder:
    """An encoder by kind: `imagebind` (path = checkpoint .pth), `clip` (path = model directory), `minilm`
    (path defaults to the packaged all-MiniLM-L6-v2). Extra keywords: batch_size, normalize."""
    if kind == "imagebind":
        return ImageBindEncoder(kw.pop("checkpoint", path), device=device, **kw)
    if kind == "clip":
        if path is None:
            raise ValueError("load_encoder('clip') needs a path: a local CLIP directory or checkpoint")
        return ClipEncoder(path, device=device, **kw)
    if kind == "minilm":
        return MiniLMEncoder(path, device=device, **kw)
    raise ValueError(f"unknown encoder kind {kind!r}; choose one of {', '.join(ENCODER_KINDS)}")


class CachedEncoder:
    """Wraps an encoder so that each distinct text or image is encoded once (across the stores of an evaluation,
    or the dialogues of a reminder context)."""

    def __init__(self, encoder: Any):
        self.encoder, self.dim = encoder, encoder.dim
        self._text: dict[str, np.ndarray] = {}
        self._image: dict[str, np.ndarray] = {}
        self.images_supported = True

    def warm(self, texts: list[str], images: list[str]) -> None:
        t0 = time.perf_counter()
        todo = list(dict.fromkeys(t for t in texts if t not in self._text))
        if todo:
            for t, v in zip(todo, tqdm(self.encoder.encode_texts(todo), desc="texts", unit="text", leave=False)):
                self._text[t] = np.asarray(v, dtype=np.float32)
        todo_img = list(dict.fromkeys(p for p in images if p not in self._image)) if self.images_supported else []
        if todo_img:
            try:
                for p, v in zip(todo_img, self.encoder.encode_images(todo_img)):
                    self._image[p] = np.asarray(v, dtype=np.float32)
            except NotImplementedError as e:
                logger.warning("encoder has no image tower (%s): images are remembered by caption only", e)
                self.images_supported = False
                todo_img = []
        dt = time.perf_counter() - t0
        logger.info("encoded %d texts and %d images in %.1fs (%.0f items/s)", len(todo), len(todo_img), dt,
                    (len(todo) + len(todo_img)) / max(dt, 1e-9))

    def encode_texts(self, texts):
        missing = [t for t in texts if t not in self._text]
        if missing:
            self.warm(missing, [])
        return np.stack([self._text[t] for t in texts])

    def encode_images(self, paths):
        if not self.images_supported:
            raise NotImplementedError("the encoder has no image tower")
        missing = [p for p in paths if p not in self._image]
        if missing:
            self.warm([], missing)
        if not self.images_supported:
            raise NotImplementedError("the encoder has no image tower")
        return np.stack([self._image[p] for p in paths])
