"""The report gathers metrics.json files into markdown tables and an overview figure.  Run: pytest tests/test_report.py"""
from __future__ import annotations

import json

from mmemory.report import build_report, markdown_table


def test_markdown_table_columns_in_first_seen_order():
    text = markdown_table([{"variant": "before", "bleu4": 1.23456}, {"variant": "after", "mrr": 0.5}])
    lines = text.strip().splitlines()
    assert lines[0] == "| variant | bleu4 | mrr |"
    assert "| before | 1.235 |  |" in lines


def test_build_report_renders_every_section_and_figure(tmp_path):
    (tmp_path / "results" / "emr").mkdir(parents=True)
    m1 = tmp_path / "results" / "emr" / "metrics.json"
    m1.write_text(json.dumps({"tables": {"EMR variants": [{"variant": "after", "bleu4": 24.8}]},
                              "headline": {"BLEU-4": 24.8}, "n_val": 80, "split": {"seed": 0}}))
    fig = tmp_path / "results" / "emr" / "loss.png"
    fig.write_bytes(b"\x89PNG")
    data_report = tmp_path / "data_report.json"
    data_report.write_text(json.dumps({"kept": {"train": 10, "val": 2}, "dropped": {"train": 1, "val": 0},
                                       "reasons": {"empty dialogue": 1}, "items": [{"problem": "empty"}]}))
    out = tmp_path / "results" / "report.md"
    overview = tmp_path / "results" / "report" / "overview.png"
    text = build_report("T", {"EMR": str(m1)}, {str(fig): "Loss curve"}, str(data_report), out, overview)
    assert out.read_text() == text
    assert "## EMR" in text and "| after | 24.8 |" in text and "| split.seed | 0 |" in text
    assert "![Loss curve](emr/loss.png)" in text
    assert "Dropped items:** 1" in text and "empty dialogue (1)" in text
    assert overview.stat().st_size > 1000


def test_benchmark_table_reads_snakemake_benchmark_files(tmp_path):
    from mmemory.report import benchmark_table

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (tmp_path / "fast.tsv").write_text(header + "1.5\t0:00:01\t30.0\t1\t1\t1\t0\t0\t10\t1\n")
    (tmp_path / "slow.tsv").write_text(header + "12.0\t0:00:12\tNA\t1\t1\t1\t0\t0\t10\t1\n")
    rows = benchmark_table(tmp_path)
    assert [r["job"] for r in rows] == ["slow", "fast"]
    assert rows[1]["wall_s"] == 1.5 and rows[1]["max_rss_mb"] == 30.0
    assert rows[0]["max_rss_mb"] != rows[0]["max_rss_mb"]  # NA -> nan, never a made-up number


def test_each_figure_appears_once_under_the_closest_section(tmp_path):
    stage = tmp_path / "results" / "memory"
    (stage / "minilm").mkdir(parents=True)
    a, b = stage / "minilm" / "metrics.json", stage / "minilm" / "context_metrics.json"
    for p in (a, b):
        p.write_text(json.dumps({"n": 1}))
    fig = stage / "minilm" / "recall.png"
    fig.write_bytes(b"\x89PNG")
    data_report = tmp_path / "data_report.json"
    data_report.write_text(json.dumps({"kept": {"train": 1}}))
    text = build_report("T", {"Memory": str(a), "Context": str(b)}, {str(fig): "Recall"}, str(data_report),
                        tmp_path / "results" / "report.md", tmp_path / "results" / "report" / "o.png")
    assert text.count("![Recall]") == 1
    assert text.index("![Recall]") < text.index("## Context")
