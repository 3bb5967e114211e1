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


def _stage_metrics():
    """A coref-like stage: estimate cells (with and without a seed spread), a per-seed training table, a table on
    every split, a headline with its controls, a positive control and scalars."""
    from mmemory.controls import claim

    return {
        "tables": {
            "Accuracy on 400 test dialogues": [
                {"model": "tiny-s", "variant": "fine-tuned", "seeds": 3,
                 "object acc": {"value": 0.355, "lo": 0.31, "hi": 0.403, "n": 400, "sd": 0.0101, "seeds": 3}},
                {"model": "random label", "variant": "baseline", "seeds": None,
                 "object acc": {"value": 0.25, "lo": 0.25, "hi": 0.25, "n": 400}}],
            "Fine-tuning per training seed": [{"model": "tiny-s", "seed": 1, "train loss": 0.41}],
            "Shortcut baselines on every split": [
                {"baseline": "first-mentioned", "train": 0.26, "val": 0.24,
                 "test": {"value": 0.23, "lo": 0.19, "hi": 0.27, "n": 400}}],
        },
        "headline": {"tiny-s fine-tuned object acc": 0.355},
        "headline_controls": {"tiny-s fine-tuned object acc": [{"control": "random label", "value": 0.25}]},
        "positive_controls": [claim("tiny-s beats chance", "tiny-s", "random label", "object acc", [0.36, 0.35],
                                    [0.25], ci95=0.05, n=400)],
        "splits": {"Fine-tuning per training seed": "train"},
        "train_seeds": 3, "data": {"source": "toy"},
    }


def test_estimates_stay_numbers_in_metrics_and_summary_csv_and_are_formatted_only_in_the_report(tmp_path):
    import pandas as pd

    (tmp_path / "results" / "coref").mkdir(parents=True)
    path = tmp_path / "results" / "coref" / "metrics.json"
    metrics = _stage_metrics()
    path.write_text(json.dumps(metrics))
    data_report = tmp_path / "data_report.json"
    data_report.write_text(json.dumps({"kept": {"train": 1}}))
    out_csv = tmp_path / "results" / "summary.csv"
    text = build_report("T", {"Coref": str(path)}, {}, str(data_report), tmp_path / "results" / "report.md",
                        tmp_path / "results" / "report" / "o.png", out_csv=out_csv, data_source="toy",
                        train_seeds=[0, 1, 2])
    assert "| tiny-s | fine-tuned | 3 | 0.355 ± 0.010 [0.310, 0.403] |" in text
    assert "| random label | baseline | – | 0.250 [0.250, 0.250] |" in text
    assert "Data source: `toy`. Training seeds: [0, 1, 2]." in text and "summary.csv" in text

    df = pd.read_csv(out_csv)
    assert list(df.columns) == ["stage", "table", "row", "metric", "value", "lo", "hi", "seed", "split", "sd", "n"]
    assert set(df.stage) == {"coref"}
    table = metrics["tables"]["Accuracy on 400 test dialogues"]
    ft = df[(df.row == "tiny-s / fine-tuned") & (df.metric == "object acc")].iloc[0]
    cell = table[0]["object acc"]
    assert (ft.value, ft.lo, ft.hi, ft.sd, ft.n, ft.split) == (cell["value"], cell["lo"], cell["hi"], cell["sd"], 400,
                                                               "test")
    seeds = df[(df.row == "tiny-s / fine-tuned") & (df.metric == "seeds")].iloc[0]
    assert seeds.value == 3
    trained = df[df.table == "Fine-tuning per training seed"].iloc[0]
    assert (trained.row, trained.metric, trained.value, trained.seed, trained.split) == (
        "tiny-s", "train loss", 0.41, 1, "train")  # the stage names the tables that are not on test
    by_split = df[df.table == "Shortcut baselines on every split"].set_index("split")
    assert by_split.loc["val", "value"] == 0.24 and by_split.loc["test", "hi"] == 0.27
    head = df[df.table == "headline"].iloc[0]
    assert (head.metric, head.value) == ("tiny-s fine-tuned object acc", 0.355)
    control = df[df.table == "headline_controls"].iloc[0]
    assert (control.row, control.value) == ("random label", 0.25)
    holds = df[(df.table == "positive_controls") & (df.metric == "holds")].iloc[0]
    assert holds.row == "tiny-s beats chance" and holds.value == 1 and holds.n == 400
    assert df[(df.table.isna()) & (df.metric == "train_seeds")].value.tolist() == [3]


def test_overview_draws_each_headline_control(tmp_path, monkeypatch):
    from mmemory import report

    drawn = []
    panels = report._headline_panels({"Coref": _stage_metrics(),
                                      "EMR": {"headline": {"BLEU-4 after": 8.6},
                                              "headline_controls": {"BLEU-4 after": [
                                                  {"control": "question alone", "value": 5.5}]}}})
    assert panels[0][1] == [("tiny-s fine-tuned object acc", 0.355, [("random label", 0.25)])]
    assert panels[1][1] == [("BLEU-4 after / 100", 0.086, [("question alone", 0.055)])]
    import matplotlib.axes

    real_plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, *a, **k: drawn.append((a, k)) or real_plot(self, *a, **k))
    report.overview_figure({"Coref": _stage_metrics()}, {"kept": {"train": 1}}, tmp_path / "o.png")
    assert [(a[0], k["ls"], k["label"]) for a, k in drawn] == [([0.25, 0.25], "--", "random label")]
    assert (tmp_path / "o.png").stat().st_size > 1000


def test_the_report_lists_every_tensorboard_folder_with_the_command_that_opens_them(tmp_path):
    results = tmp_path / "results"
    for d in ("emr/after/s0/tensorboard", "counting/finetuned/s1/tensorboard"):
        (results / d).mkdir(parents=True)
        (results / d / "events.out.tfevents.1.host.1.0").write_bytes(b"")
    (results / "emr" / "after" / "s0" / "loss.csv").write_text("step\n")
    m = results / "emr" / "metrics.json"
    m.write_text(json.dumps({"n": 1}))
    data_report = tmp_path / "data_report.json"
    data_report.write_text(json.dumps({"kept": {"train": 1}}))
    text = build_report("T", {"EMR": str(m)}, {}, str(data_report), results / "report.md",
                        results / "report" / "o.png", logs_dir=results)
    section = text[text.index("## Training logs (TensorBoard)"):]
    assert f"`tensorboard --logdir {results.as_posix()}`" in section
    assert f"| counting | {results.as_posix()}/counting/finetuned/s1/tensorboard |" in section
    assert f"| emr | {results.as_posix()}/emr/after/s0/tensorboard |" in section
