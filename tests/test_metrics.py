"""Shared metrics: VisDial ranking (official definitions) and text metrics.  Run: pytest tests/test_metrics.py"""
from __future__ import annotations

import numpy as np
import pytest

from mmemory.metrics import bleu4_nltk, ndcg, ranking_metrics, rouge_scores, sacrebleu_corpus, scores_to_ranks


def test_ranks_are_one_based_descending():
    ranks = scores_to_ranks(np.array([[0.1, 0.9, 0.5]]))
    assert ranks.tolist() == [[3, 1, 2]]


def test_ranking_metrics_by_hand():
    scores = np.zeros((3, 20))
    scores[0, 4] = 1.0  # gt 4 ranked first
    scores[1] = np.arange(20)[::-1]  # option i has rank i+1; gt 6 -> rank 7
    scores[2] = np.arange(20)  # gt 0 -> rank 20
    m = ranking_metrics(scores, np.array([4, 6, 0]))
    assert m["r@1"] == pytest.approx(1 / 3)
    assert m["r@5"] == pytest.approx(1 / 3)
    assert m["r@10"] == pytest.approx(2 / 3)
    assert m["mean_rank"] == pytest.approx((1 + 7 + 20) / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 7 + 1 / 20) / 3)


def test_ndcg_perfect_worst_and_partial():
    rel = np.array([[1.0, 0.5, 0.0, 0.0]])
    assert ndcg(np.array([[4.0, 3.0, 2.0, 1.0]]), rel) == pytest.approx(1.0)
    assert ndcg(np.array([[1.0, 2.0, 3.0, 4.0]]), rel) == pytest.approx(0.0)
    # top-2 = options 1 then 0: (0.5/1 + 1/log2(3)) / (1 + 0.5/log2(3))
    expected = (0.5 + 1 / np.log2(3)) / (1 + 0.5 / np.log2(3))
    assert ndcg(np.array([[3.0, 4.0, 1.0, 0.0]]), rel) == pytest.approx(expected)


def test_ranking_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ranking_metrics(np.zeros((2, 5)), np.array([1]))


def test_text_metrics_identity_and_disjoint():
    refs = ["the red circle is on the left", "there are two shapes in the picture"]
    assert bleu4_nltk(refs, refs) == pytest.approx(100.0)
    assert sacrebleu_corpus(refs, refs) == pytest.approx(1.0)
    assert rouge_scores(refs, refs)["rougeL"] == pytest.approx(1.0)
    bad = ["zzz yyy", "qqq"]
    assert rouge_scores(bad, refs)["rouge1"] == 0.0
    assert sacrebleu_corpus(bad, refs) < 0.01
