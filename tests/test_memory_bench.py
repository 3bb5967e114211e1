"""The memory benchmark runs end to end on a tiny size and reports every figure (no timing assertions).

    pytest tests/test_memory_bench.py -q
"""
from __future__ import annotations

import json

import pytest

from mmemory.bench import memory as bench


@pytest.mark.parametrize("index", ["flat", "ivfflat"])
def test_bench_memory_tiny(tmp_path, index, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--n", "3000", "--dim", "32", "--clusters", "20", "--queries", "20", "--brute-queries", "5",
                       "--index", index, "--nlist", "16", "--train-per-list", "40", "--batch", "1000",
                       "--store", str(tmp_path / "store"), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("insert_per_s_db", "search_p50_ms", "search_p99_ms", "brute_force_p50_ms", "recall@10", "peak_rss_mb",
                "speedup_vs_brute_force_p50"):
        assert res[key] > 0, key
    for key in ("faiss_only_p50_ms", "search_full_score_p50_ms", "ratio_search_to_faiss_p50",
                "ratio_full_score_to_faiss_p50", "ratio_full_score_to_search_p50"):
        assert res[key] > 0, key
    assert "store_overhead_p50_ms" in res and res["warmup_queries"] == 50
    assert set(res["goals_met"]) >= {"p50<=2ms", "full score p50<=2ms", "store overhead<=0.5ms"}
    assert res["index"] == index and res["n"] == 3000
    if index == "flat":
        assert res["recall@10"] == 1.0  # exact index + exact rescoring
    assert "search_p50_ms" in capsys.readouterr().out
    assert not (tmp_path / "store").exists()  # scratch store removed
