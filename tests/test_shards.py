"""Embedding shards: `pytest tests/test_shards.py` (offline, synthetic arrays and images)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmemory.shards import EncodedBatch, ShardedEmbeddings, shard_file, write_shards


def _encoder(data, calls):
    def encode(keys):
        calls.append(list(keys))
        return EncodedBatch(np.stack([data[k] for k in keys]), list(keys))
    return encode


def _data(n=25, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    return {f"k{i}": rng.standard_normal(dim).astype(np.float32) for i in range(n)}


def test_round_trip_any_order_and_shard_sizes(tmp_path):
    data, calls = _data(), []
    index = write_shards(tmp_path, list(data), _encoder(data, calls), shard_size=10, fingerprint="fp")
    assert [s["n"] for s in index["shards"]] == [10, 10, 5]
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [shard_file(i) for i in range(3)]
    store = ShardedEmbeddings(tmp_path)
    keys = ["k24", "k0", "k13", "k0", "k9"]
    np.testing.assert_array_equal(store.get_many(keys), np.stack([data[k] for k in keys]))
    assert len(store) == 25 and store.dim == 8 and "k3" in store and "nope" not in store
    with pytest.raises(KeyError, match="never extracted"):
        store.get("nope")


def _killed_at(data, calls, n):
    """An encoder that is killed when asked for its n-th shard (1-based)."""
    enc = _encoder(data, calls)

    def encode(keys):
        if len(calls) + 1 == n:
            raise KeyboardInterrupt("killed")
        return enc(keys)
    return encode


def test_resume_skips_finished_shards(tmp_path):
    data, calls = _data(), []
    with pytest.raises(KeyboardInterrupt):  # killed before the second shard landed
        write_shards(tmp_path, list(data), _killed_at(data, calls, 2), 10, "fp")
    assert not (tmp_path / "index.json").exists()
    calls.clear()
    write_shards(tmp_path, list(data), _encoder(data, calls), 10, "fp")
    assert calls == [[f"k{i}" for i in range(10, 20)], [f"k{i}" for i in range(20, 25)]]  # shard 1 was kept
    np.testing.assert_array_equal(ShardedEmbeddings(tmp_path).get("k15"), data["k15"])
    calls.clear()
    write_shards(tmp_path, list(data), _encoder(data, calls), 10, "fp")
    assert len(calls) == 3  # a finished extraction run again (index missing, or forced) encodes everything


def test_torn_shard_and_changed_encoder_are_redone(tmp_path):
    data, calls = _data(), []
    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path, list(data), _killed_at(data, calls, 3), 10, "fp")
    (tmp_path / shard_file(1)).write_bytes(b"\x00\x01torn")
    calls.clear()
    write_shards(tmp_path, list(data), _encoder(data, calls), 10, "fp")
    assert calls == [[f"k{i}" for i in range(10, 20)], [f"k{i}" for i in range(20, 25)]]
    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path / "b", list(data), _killed_at(data, [], 3), 10, "fp")
    calls.clear()
    write_shards(tmp_path / "b", list(data), _encoder(data, calls), 10, "another-encoder")
    assert len(calls) == 3  # a different encoder fingerprint invalidates every shard


def test_same_keys_other_content_are_redone(tmp_path, caplog):
    import logging

    data, calls = _data(), []
    contents = {k: f"text of {k}" for k in data}
    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path, list(data), _killed_at(data, calls, 3), 10, "fp", contents=contents)
    calls.clear()
    with caplog.at_level(logging.WARNING):
        write_shards(tmp_path, list(data), _encoder(data, calls), 10, "fp", contents={**contents, "k3": "changed"})
    assert len(calls) == 3 and "inputs changed (items)" in caplog.text


def test_quarantine_is_listed_and_counted_never_zero(tmp_path):
    data = _data(6)

    def encode(keys):
        kept = [k for k in keys if k != "k2"]
        bad = [{"key": "k2", "path": "img2.png", "reason": "truncated"}] if "k2" in keys else []
        return EncodedBatch(np.stack([data[k] for k in kept]), kept, bad)

    index = write_shards(tmp_path, list(data), encode, 4, "fp")
    assert index["n_quarantined"] == 1 and index["n_items"] == 5
    store = ShardedEmbeddings(tmp_path)
    assert "k2" not in store and "k2" in store.quarantined
    with pytest.raises(KeyError, match="quarantined"):
        store.get("k2")
    assert json.loads((tmp_path / "index.json").read_text())["quarantined"][0]["path"] == "img2.png"


def test_zero_or_nan_rows_are_refused(tmp_path):
    data = _data(4)
    data["k1"] = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="'k1'.*zeros"):
        write_shards(tmp_path, list(data), _encoder(data, []), 4, "fp")
    data["k1"] = np.full(8, np.nan, np.float32)
    with pytest.raises(ValueError, match="not finite"):
        write_shards(tmp_path / "b", list(data), _encoder(data, []), 4, "fp")


def test_encoder_must_account_for_every_key(tmp_path):
    data = _data(4)
    with pytest.raises(ValueError, match="exactly the keys"):
        write_shards(tmp_path, list(data), lambda ks: EncodedBatch(np.stack([data[k] for k in ks[:-1]]), ks[:-1]),
                     4, "fp")
    with pytest.raises(ValueError, match="duplicate key"):
        write_shards(tmp_path, ["a", "a"], _encoder(data, []), 4, "fp")


def test_bench_runs_small(capsys):
    from mmemory.bench.shards import main

    assert main(["--items", "300", "--dim", "16", "--shard-size", "100"]) == 0
    out = capsys.readouterr().out
    assert "safetensors shards" in out and "one .pt file per item" in out and "x faster" in out
