"""Shared metrics: VisDial ranking (official definitions) and text metrics.  Run: pytest tests/test_metrics.py"""
from __future__ import annotations

import numpy as np
import pytest

from mmemory.metrics import (bleu4_nltk, ndcg, ranking_metrics, rouge_scores, sacrebleu_corpus, scores_to_ranks,
                             worst_ranking_scores)


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
    assert sacrebleu_corpus(refs, refs) == pytest.approx(100.0)  # the same 0-100 scale as bleu4_nltk
    assert rouge_scores(refs, refs)["rougeL"] == pytest.approx(1.0)
    bad = ["zzz yyy", "qqq"]
    assert rouge_scores(bad, refs)["rouge1"] == 0.0
    assert sacrebleu_corpus(bad, refs) < 1


def test_the_two_bleus_differ_on_short_answers():
    """Why every BLEU column names its BLEU: on short VisDial-like answers they are far apart. Five exact answers:
    sacreBLEU 100, the seeds' nltk BLEU-4 50 (the one-word answers' missing 2-4-grams count against it)."""
    refs = ["yes", "two", "at the top left", "a red circle", "no"]
    assert sacrebleu_corpus(refs, refs) == pytest.approx(100.0)
    assert bleu4_nltk(refs, refs) == pytest.approx(50.0)


@pytest.mark.parametrize("relevance", [None, [0.5, 0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 0.2]])
def test_worst_ranking_is_the_minimum_of_every_metric(relevance):
    rng = np.random.default_rng(0)
    gt = 2
    worst = worst_ranking_scores(8, gt, relevance)
    m = ranking_metrics(worst[None], np.array([gt]))
    assert m == {"r@1": 0.0, "r@5": 0.0, "r@10": 1.0, "mean_rank": 8.0, "mrr": 1 / 8}  # 8 options: R@10 is 1
    if relevance is not None:
        rel = np.array([relevance])
        assert ndcg(worst[None], rel) == 0.0
        for _ in range(50):  # no ordering does worse
            s = rng.normal(size=(1, 8))
            assert ndcg(s, rel) >= 0.0 and ranking_metrics(s, np.array([gt]))["mrr"] >= m["mrr"]
    with pytest.raises(ValueError):
        worst_ranking_scores(5, 0, [1.0, 0.0])
