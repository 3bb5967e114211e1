"""The memory benchmark runs end to end on a tiny size and reports every figure (no timing assertions).

    pytest tests/test_memory_bench.py -q
"""
from __future__ import annotations

import json

import pytest

from mmemory.bench import memory as bench


@pytest.mark.parametrize("index", ["flat", "ivfflat", "pca_hnsw"])
def test_bench_memory_tiny(tmp_path, index, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--n", "3000", "--dim", "32", "--clusters", "20", "--queries", "20", "--brute-queries", "5",
                       "--index", index, "--nlist", "16", "--train-per-list", "40", "--batch", "1000",
                       "--pca-dim", "16", "--pca-train", "1000",
                       "--store", str(tmp_path / "store"), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("insert_per_s_db", "search_p50_ms", "search_p99_ms", "brute_force_p50_ms", "recall@10", "peak_rss_mb",
                "speedup_vs_brute_force_p50"):
        assert res[key] > 0, key
    for key in ("faiss_only_p50_ms", "search_full_score_p50_ms", "ratio_search_to_faiss_p50",
                "ratio_full_score_to_faiss_p50", "ratio_full_score_to_search_p50", "open_s_index", "open_s_columns",
                "store_own_p50_ms", "store_own_full_score_p50_ms",
                "columns_mb"):
        assert res[key] > 0, key
    assert "store_overhead_p50_ms" in res and res["warmup_queries"] == 50
    assert set(res["goals_met"]) >= {"p50<=2ms", "full score p50<=2ms", "store overhead<=0.3ms"}
    assert res["index"] == index and res["n"] == 3000
    if index == "flat":
        assert res["recall@10"] == 1.0  # exact index + exact rescoring
    if index == "pca_hnsw":
        assert "pca_dim=16" in res["index_params"] and res["recall@10"] >= 0.9
    assert "search_p50_ms" in capsys.readouterr().out
    assert not (tmp_path / "store").exists()  # scratch store removed


def test_anisotropic_vectors_have_the_asked_spectrum():
    """The hard distribution: power-law eigenvalues around a shared direction, as `spectrum_summary` measures them;
    the clustered one is not power-law shaped the same way (most variance in many equal directions)."""
    import numpy as np

    rng = np.random.default_rng(0)
    d = rng.standard_normal(128).astype(np.float32)
    d /= np.linalg.norm(d)
    x = bench.anisotropic(rng, 6000, 128, alpha=1.0, mean_share=0.3, mean_dir=d)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    s = bench.spectrum_summary(x, top=50)
    assert abs(s["alpha_top50"] - 1.0) < 0.2 and abs(s["mean_norm2"] - 0.3) < 0.03
    steeper = bench.spectrum_summary(bench.anisotropic(rng, 6000, 128, alpha=2.0, mean_share=0.3, mean_dir=d), top=50)
    assert steeper["alpha_top50"] > s["alpha_top50"] + 0.5 and steeper["effective_dim"] < s["effective_dim"]


def test_bench_sweep_reports_a_curve_per_family_and_a_choice(tmp_path):
    """--index with several families builds the first while inserting and rebuilds each later one from SQLite; each
    is swept on its own knob (nprobe, efSearch; flat is one exact point), FAISS and the store side by side. Recall
    never falls as nprobe grows on one index; each family's choice is its cheapest swept point with recall@10 >= 0.95
    (none: null). No timing is asserted."""
    out, png = tmp_path / "bench.json", tmp_path / "sweep.png"
    assert bench.main(["--n", "3000", "--dim", "32", "--queries", "20", "--brute-queries", "5", "--warmup", "5",
                       "--index", "ivfflat,pca_hnsw,flat", "--nlist", "16", "--train-per-list", "40",
                       "--batch", "1000", "--pca-dim", "16", "--pca-train", "1000",
                       "--sweep-nprobe", "1,4,16", "--sweep-ef", "16,64", "--sweep-queries", "20", "--plot", str(png),
                       "--store", str(tmp_path / "store"), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["distribution"] == "anisotropic" and "alpha_top32" in res["spectrum"]["synthetic"]
    assert res["index"] == "ivfflat" and set(res["builds_s"]) == {"ivfflat", "pca_hnsw", "flat"}
    sweep = res["sweep"]
    assert [(p["index"], p["value"]) for p in sweep] == [("ivfflat", 1), ("ivfflat", 4), ("ivfflat", 16),
                                                          ("pca_hnsw", 16), ("pca_hnsw", 64), ("flat", None)]
    ivf = [p["recall@10"] for p in sweep if p["index"] == "ivfflat"]
    assert ivf == sorted(ivf) and ivf[-1] == 1.0      # nprobe = nlist visits every list: exact
    assert sweep[-1]["recall@10"] == 1.0 and res["sweep_chosen"]["flat"] == "exact"
    for p in sweep:
        assert p["faiss_p50_ms"] > 0 and p["full_p50_ms"] > 0 and "store_overhead_p50_ms" in p
        assert p["speedup_full_vs_brute_force_p50"] > 0
    for kind in ("ivfflat", "pca_hnsw"):
        good = [p for p in sweep if p["index"] == kind and p["recall@10"] >= 0.95]
        want = min(good, key=lambda p: p["full_p50_ms"])["value"] if good else None
        assert res["sweep_chosen"][kind] == want
    assert png.is_file() and png.stat().st_size > 0
