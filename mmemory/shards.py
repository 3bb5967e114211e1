"""Embedding shards: safetensors files of at most `shard_size` items each, plus `index.json` (key -> shard, row).

The seeds wrote one `.pt` file per item (910,613 files). Here a split's embeddings live in a few files:

    <dir>/shard-00000.safetensors   tensor "embeddings" [n, D] float32; metadata: keys, fingerprint, quarantined
    <dir>/index.json                {"format", "dim", "fingerprint", "encoder", "shards": [{"file", "n"}], "keys": {key: [s, r]},
                                     "quarantined": [{"key", "path", "reason"}], ...}

`write_shards` encodes keys shard by shard. A finished shard is one atomic file whose metadata records the keys it
was asked for (with the content each key embeds: its text, or its image file's digest) and the run's fingerprint
(`mmemory.fingerprint`: the items' content, the encoder settings, the encoder's model files), so a rerun after a
kill skips every finished shard and redoes only the rest. `<dir>/run.json` stamps the run: when the fingerprint
changed (e.g. the same keys with other text), or the previous extraction finished (a rerun because the index is
missing, or forced), every shard is encoded again and the log says why. Items the encoder cannot read are either
a hard error or quarantined (left out, listed in the index and counted); an item is never stored as zeros. `ShardedEmbeddings` reads the index and serves `get_many(keys)` in any
order from memory-mapped shards (only the rows asked for are read).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from mmemory.fingerprint import Fingerprint, Run, items_digest, model_digest, remove
from mmemory.io import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

FORMAT = "mmemory-shards/1"
TENSOR = "embeddings"


@dataclass
class EncodedBatch:
    """What an encode function returns for one shard's keys: rows for the kept keys, and the quarantined ones."""

    embeddings: np.ndarray
    keys: list[str]
    quarantined: list[dict] = field(default_factory=list)


def _keys_digest(keys: Sequence[str], contents: Mapping[str, Any] | None = None) -> str:
    if contents is None:
        return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()[:16]
    return items_digest([k, contents.get(k)] for k in keys)


def shard_file(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def _check_rows(emb: np.ndarray, keys: list[str], where: str) -> None:
    if emb.ndim != 2 or emb.shape[0] != len(keys):
        raise ValueError(f"{where}: encoder returned {emb.shape} for {len(keys)} keys")
    bad = ~np.isfinite(emb).all(axis=1) | (np.abs(emb).max(axis=1, initial=0.0) == 0.0)
    if bad.any():
        k = keys[int(np.argmax(bad))]
        raise ValueError(f"{where}: embedding for {k!r} is all zeros or not finite; the encoder failed on it "
                         f"(check the item; embeddings are never zero-filled)")


def _read_shard_meta(path: Path) -> dict | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # a torn or foreign file: it is simply redone
        logger.warning("%s: unreadable shard (%s); it will be rewritten", path, e)
        return None


def write_shards(out_dir: str | Path, keys: Sequence[str], encode: Callable[[list[str]], EncodedBatch],
                 shard_size: int, fingerprint: str, desc: str = "embeddings",
                 contents: Mapping[str, Any] | None = None, models: Mapping[str, str | Path | None] | None = None
                 ) -> dict:
    """Encode `keys` into shards under `out_dir` (resuming an interrupted run's finished shards) and write
    `index.json`; return it. `fingerprint` names the encoder and its settings; `contents` maps a key to what it
    embeds (a text, or an image file's digest) and `models` names model files whose content joins the run's
    fingerprint."""
    from safetensors.numpy import save

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if len(set(keys)) != len(keys):
        from collections import Counter

        dup = next(k for k, n in Counter(keys).items() if n > 1)
        raise ValueError(f"duplicate key {dup!r}: every embedding key must be unique")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(keys)
    fp = Fingerprint(inputs={"items": items_digest([k, contents.get(k) if contents else None] for k in keys)},
                     settings={"encoder": fingerprint, "shard_size": shard_size},
                     models={n: model_digest(p) for n, p in (models or {}).items()})
    run = Run(out_dir / "run.json", fp, desc)
    run.begin(clear=lambda: remove(out_dir / "index.json", *out_dir.glob("shard-*.safetensors")))
    chunks = [keys[i:i + shard_size] for i in range(0, len(keys), shard_size)]
    shards, index, quarantined, dim = [], {}, [], None
    done = encoded = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(keys), desc=desc, unit="item")
    for s, chunk in enumerate(chunks):
        path = out_dir / shard_file(s)
        digest = _keys_digest(chunk, contents)
        meta = _read_shard_meta(path) if path.exists() else None
        if not (meta and meta.get("fingerprint") == fp.digest and meta.get("requested") == digest):
            batch = encode(chunk)
            emb = np.ascontiguousarray(batch.embeddings, dtype=np.float32)
            _check_rows(emb, batch.keys, f"{path}")
            if set(batch.keys) | {q["key"] for q in batch.quarantined} != set(chunk):
                raise ValueError(f"{path}: the encoder must return or quarantine exactly the keys it was given")
            meta = {"fingerprint": fp.digest, "requested": digest, "keys": json.dumps(batch.keys),
                    "quarantined": json.dumps(batch.quarantined), "format": FORMAT}
            atomic_write_bytes(path, save({TENSOR: emb}, metadata=meta))
            encoded += len(chunk)
        else:
            logger.info("%s: already complete, skipped (resume)", path.name)
        kept = json.loads(meta["keys"])
        quarantined += json.loads(meta["quarantined"])
        for r, k in enumerate(kept):
            index[k] = [s, r]
        shards.append({"file": path.name, "n": len(kept)})
        done += len(chunk)
        bar.update(len(chunk))
        elapsed = time.perf_counter() - t0
        logger.info("%s: shard %d/%d, %d items, %.1f items/s encoded", desc, s + 1, len(chunks), len(kept),
                    encoded / elapsed if elapsed > 0 and encoded else 0.0)
    bar.close()
    for sh in shards:  # the width of the first non-empty shard
        if sh["n"]:
            from safetensors import safe_open

            with safe_open(str(out_dir / sh["file"]), framework="numpy") as f:
                dim = int(f.get_slice(TENSOR).get_shape()[1])
            break
    result = {
        "format": FORMAT, "dim": dim, "shard_size": shard_size, "fingerprint": fp.digest, "encoder": fingerprint,
        "n_items": len(index), "n_requested": len(keys), "n_quarantined": len(quarantined),
        "shards": shards, "quarantined": quarantined, "keys": index,
    }
    atomic_write_json(out_dir / "index.json", result)
    run.finish()  # a rerun (index missing, or forced) encodes every shard again
    elapsed = time.perf_counter() - t0
    logger.info("%s: %d items in %d shards (%d encoded now, %d quarantined) in %.1fs", desc, len(index), len(shards),
                encoded, len(quarantined), elapsed)
    return result


def _memmap_tensor(path: Path, name: str) -> np.ndarray:
    """Memory-map one float32 tensor of a safetensors file (8-byte header size, JSON header, raw little-endian
    data; https://github.com/huggingface/safetensors#format): rows are read from disk only when indexed."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    info = header[name]
    if info["dtype"] != "F32":
        raise ValueError(f"{path}: tensor {name!r} is {info['dtype']}, expected F32")
    begin, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if end - begin != 4 * int(np.prod(shape)):
        raise ValueError(f"{path}: tensor {name!r} has a bad size; the shard is corrupt, delete it and re-extract")
    if not shape[0]:
        return np.zeros(shape, dtype=np.float32)
    return np.memmap(path, dtype="<f4", mode="r", offset=8 + n + begin, shape=shape)


class ShardedEmbeddings:
    """Read access to a shard directory (or its index.json): `get_many(keys) -> [N, D]` in any order."""

    def __init__(self, path: str | Path, max_cached_shards: int | None = None):
        path = Path(path)
        self.index_path = path / "index.json" if path.is_dir() else path
        if not self.index_path.exists():
            raise FileNotFoundError(f"{self.index_path}: no shard index; run rule extract_embeddings first")
        self.root = self.index_path.parent
        self.index = json.loads(self.index_path.read_text())
        if self.index.get("format") != FORMAT:
            raise ValueError(f"{self.index_path}: not a {FORMAT} index")
        self.dim = self.index["dim"]
        self.fingerprint = self.index["fingerprint"]
        self._loc = self.index["keys"]
        self._quarantined = {q["key"] for q in self.index.get("quarantined", [])}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.max_cached_shards = max_cached_shards

    def __len__(self) -> int:
        return len(self._loc)

    def __contains__(self, key: str) -> bool:
        return key in self._loc

    @property
    def quarantined(self) -> set[str]:
        return set(self._quarantined)

    def keys(self) -> list[str]:
        return list(self._loc)

    def _shard(self, s: int) -> np.ndarray:
        arr = self._cache.get(s)
        if arr is None:
            arr = _memmap_tensor(self.root / self.index["shards"][s]["file"], TENSOR)
            self._cache[s] = arr
            if self.max_cached_shards and len(self._cache) > self.max_cached_shards:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(s)
        return arr

    def locate(self, key: str) -> tuple[int, int]:
        try:
            s, r = self._loc[key]
        except KeyError:
            why = "it was quarantined at extraction (see index.json 'quarantined')" if key in self._quarantined \
                else "it was never extracted"
            raise KeyError(f"{self.index_path}: no embedding for {key!r}: {why}") from None
        return s, r

    def get(self, key: str) -> np.ndarray:
        s, r = self.locate(key)
        return self._shard(s)[r]

    def get_many(self, keys: Sequence[str]) -> np.ndarray:
        """Rows for `keys` in order, gathered shard by shard with one fancy-index per shard."""
        loc = self._loc
        locs = np.array([loc[k] if k in loc else self.locate(k) for k in keys], dtype=np.int64).reshape(-1, 2)
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        for s in set(locs[:, 0].tolist()):
            sel = np.flatnonzero(locs[:, 0] == s)
            out[sel] = self._shard(s)[locs[sel, 1]]
        return out
