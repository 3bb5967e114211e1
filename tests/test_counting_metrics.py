"""Counting metrics against a hand-computed case, parse failures (None) scored and counted, baselines, buckets,
the figures and the report's rows. Run: pytest tests/test_counting_metrics.py"""
import math

import pytest

from mmemory.counting.metrics import (FAILURE_VALUE, TABLE_COLUMNS, bucket_errors, constant_baseline,
                                      counting_metrics, counting_table, plot_buckets, plot_scatter)

TRUE = [0, 1, 2, 2, 5]
PRED = [0, 2, 2, None, 2]  # errors with the failure as 0: 0, 1, 0, 2, 3


def test_hand_computed_case():
    m = counting_metrics(TRUE, PRED)
    assert m["n"] == 5
    assert m["exact_accuracy"] == pytest.approx(2 / 5)
    assert m["within_1"] == pytest.approx(3 / 5)
    assert m["within_2"] == pytest.approx(3 / 5)  # the failure's error is 2, but a failure is never within ±k
    assert m["mae"] == pytest.approx(6 / 5)
    assert m["rmse"] == pytest.approx(math.sqrt(14 / 5))
    # classes -1 (failure), 0, 1, 2, 5: P = 0, 1, 0, 1/3, 0; R = 0, 1, 0, 1/2, 0; F1 = 0, 1, 0, 0.4, 0
    assert m["precision_macro"] == pytest.approx(4 / 15)
    assert m["recall_macro"] == pytest.approx(0.3)
    assert m["f1_macro"] == pytest.approx(0.28)
    # weighted by true support 0:1, 1:1, 2:2, 5:1
    assert m["precision_weighted"] == pytest.approx(1 / 3)
    assert m["recall_weighted"] == pytest.approx(0.4)
    assert m["f1_weighted"] == pytest.approx(0.36)
    assert m["parse_failures"] == 1 and m["parse_failure_rate"] == pytest.approx(0.2)


def test_failures_are_scored_not_dropped():
    perfect = counting_metrics([4, 6], [4, 6])
    assert perfect["exact_accuracy"] == 1 and perfect["mae"] == 0 and perfect["f1_macro"] == 1
    assert perfect["parse_failure_rate"] == 0
    failed = counting_metrics([4, 6], [4, None])
    assert failed["n"] == 2 and failed["exact_accuracy"] == 0.5 and failed["parse_failure_rate"] == 0.5
    assert failed["mae"] == pytest.approx(abs(6 - FAILURE_VALUE) / 2)
    # a failure on a frame with 0 people is still wrong, though its MAE error is 0
    zero = counting_metrics([0], [None])
    assert zero["exact_accuracy"] == 0 and zero["within_2"] == 0 and zero["mae"] == 0 and zero["f1_macro"] == 0


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="one prediction"):
        counting_metrics([1, 2], [1])
    with pytest.raises(ValueError, match="no test frames"):
        counting_metrics([], [])


def test_constant_baselines():
    train, test = [1, 2, 2, 7], [2, 3, 5]
    mean = constant_baseline(train, test, "mean")  # 3.0
    assert mean["constant"] == 3.0 and mean["constant_rounded"] == 3
    assert mean["exact_accuracy"] == pytest.approx(1 / 3) and mean["within_1"] == pytest.approx(2 / 3)
    assert mean["within_2"] == 1 and mean["mae"] == pytest.approx(1.0)
    median = constant_baseline(train, test, "median")  # 2.0
    assert median["constant"] == 2.0 and median["mae"] == pytest.approx(4 / 3)
    assert median["rmse"] == pytest.approx(math.sqrt(10 / 3))
    half = constant_baseline([1, 2], [2, 3, 5], "mean")  # 1.5: MAE unrounded, exact with 2 (half up)
    assert half["constant_rounded"] == 2 and half["exact_accuracy"] == pytest.approx(1 / 3)
    assert half["mae"] == pytest.approx((0.5 + 1.5 + 3.5) / 3)
    with pytest.raises(ValueError, match="mean' or 'median"):
        constant_baseline(train, test, "mode")


def test_bucket_errors():
    rows = bucket_errors([0, 1, 4, 5, 9, 20], [0, 3, 4, None, 8, 10], [0, 4, 8])
    assert [(r["bucket"], r["n"]) for r in rows] == [("0-3", 2), ("4-7", 2), (">= 8", 2)]
    assert rows[0]["mae"] == pytest.approx(1.0)
    assert rows[1]["mae"] == pytest.approx(2.5) and rows[1]["parse_failures"] == 1
    assert rows[2]["mae"] == pytest.approx(5.5)
    with pytest.raises(ValueError, match="increasing"):
        bucket_errors([1], [1], [4, 2])


def test_figures_are_written(tmp_path):
    rows = {"fine-tuned": [{"count_true": t, "count_pred": p} for t, p in zip(TRUE, PRED)],
            "untuned": [{"count_true": t, "count_pred": None} for t in TRUE]}
    plot_scatter(rows, tmp_path / "scatter.png")
    buckets = {k: bucket_errors(TRUE, [r["count_pred"] for r in rs], [0, 2, 4]) for k, rs in rows.items()}
    plot_buckets(buckets, tmp_path / "buckets.png")
    for name in ("scatter.png", "buckets.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_counting_table_rows():
    a, b = counting_metrics(TRUE, PRED), counting_metrics(TRUE, TRUE)
    rows = counting_table({"fine-tuned": [a, b], "untuned model": a,
                           "train mean": constant_baseline([1, 2], TRUE, "mean")})
    assert [r["method"] for r in rows] == ["fine-tuned", "untuned model", "train mean"]
    assert list(rows[0])[1:-2] == [label for _, label in TABLE_COLUMNS]
    assert rows[0]["seeds"] == 2 and rows[0]["n"] == 5 and rows[0]["exact acc"] == {
        "value": pytest.approx(0.7), "sd": pytest.approx(0.4243, abs=1e-4), "seeds": 2}
    assert rows[1]["seeds"] == 1 and rows[1]["MAE"] == 1.2
    with pytest.raises(ValueError, match="different numbers"):
        counting_table({"x": [a, counting_metrics([1], [1])]})
