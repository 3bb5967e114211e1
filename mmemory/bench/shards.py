"""`python -m mmemory.bench shards [--items 100000] [--dim 1024] [--batch 16] [--shard-size 10000]`

Loads the same embedding items in the training loader's access pattern (a shuffled epoch, one batch of keys at a
time, each batch stacked into a tensor) from safetensors shards (mmemory.shards) and from one `.pt` file per item
(the seeds' layout: `<image_id>_vision.pt`, `<image_id>_q<r>_text.pt`), side by side, and prints items/s and the ratio.
Both layouts are written to a temp dir first (not timed) and read with a warm page cache, which favours the
per-file layout; the goal is shards >= 20x faster.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmemory.shards import EncodedBatch, ShardedEmbeddings, write_shards


def seed_keys(n_items: int) -> list[str]:
    """Keys shaped like the seeds' files: per image one vision item and ten question items."""
    keys = []
    image_id = 0
    while len(keys) < n_items:
        keys.append(f"{image_id}_vision")
        keys += [f"{image_id}_q{r}_text" for r in range(10)]
        image_id += 1
    return keys[:n_items]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmemory.bench shards", description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000, help="embedding items (default 100,000)")
    ap.add_argument("--dim", type=int, default=1024, help="embedding width (ImageBind-Huge: 1024)")
    ap.add_argument("--batch", type=int, default=16, help="items per loader batch")
    ap.add_argument("--shard-size", type=int, default=10_000, help="items per shard")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed afterwards)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mmemory-bench-shards-"))
    try:
        rng = np.random.default_rng(args.seed)
        keys = seed_keys(args.items)
        data = rng.standard_normal((len(keys), args.dim), dtype=np.float32)
        row = {k: i for i, k in enumerate(keys)}

        t = time.perf_counter()
        write_shards(root / "shards", keys, lambda ks: EncodedBatch(data[[row[k] for k in ks]], list(ks)),
                     args.shard_size, fingerprint="bench")
        t_write_shards = time.perf_counter() - t
        per_item = root / "per_item"
        per_item.mkdir()
        t = time.perf_counter()
        for k, i in row.items():
            torch.save(torch.from_numpy(data[i]), per_item / f"{k}.pt")
        t_write_pt = time.perf_counter() - t
        print(f"wrote {len(keys):,} items x {args.dim}: shards {t_write_shards:.1f}s, per-item .pt {t_write_pt:.1f}s")

        order = rng.permutation(len(keys))
        batches = [[keys[i] for i in order[b:b + args.batch]] for b in range(0, len(keys), args.batch)]

        t = time.perf_counter()
        store = ShardedEmbeddings(root / "shards")
        check_s = 0.0
        for b in batches:
            x = torch.from_numpy(store.get_many(b))
            check_s += float(x[0, 0])
        t_shards = time.perf_counter() - t

        t = time.perf_counter()
        check_p = 0.0
        for b in batches:
            x = torch.stack([torch.load(per_item / f"{k}.pt", weights_only=True) for k in b])
            check_p += float(x[0, 0])
        t_pt = time.perf_counter() - t
        if not np.isclose(check_s, check_p, rtol=1e-4, atol=1e-3):
            raise AssertionError(f"the two layouts returned different data ({check_s} vs {check_p})")

        n = len(keys)
        print(f"{'layout':<28}{'seconds':>10}{'items/s':>14}")
        print(f"{'safetensors shards':<28}{t_shards:>10.2f}{n / t_shards:>14,.0f}")
        print(f"{'one .pt file per item':<28}{t_pt:>10.2f}{n / t_pt:>14,.0f}")
        ratio = t_pt / t_shards
        print(f"shards are {ratio:.1f}x faster (goal >= 20x) over {n:,} items in batches of {args.batch}, "
              f"{len(store.index['shards'])} shards of <= {args.shard_size:,}")
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0
