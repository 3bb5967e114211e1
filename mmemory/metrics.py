"""Metrics shared by every stage: VisDial ranking metrics and text-generation metrics.

Two BLEUs, each under its own name and both on a 0-100 scale: `bleu4_nltk` is the EMR seeds' nltk corpus BLEU-4,
`sacrebleu_corpus` is sacreBLEU (the `<reminder>` seeds' BLEU). They differ a lot on short answers.

Ranking follows the official VisDial v1.0 evaluation (visdial-challenge-starter-pytorch, metrics.py):
ranks are 1-based positions of the ground-truth option when the 100 options are sorted by score (descending);
R@k = mean(rank <= k), MRR = mean(1 / rank), mean rank = mean(rank); NDCG is computed per annotated round
over the top-K options, K = number of options with relevance > 0, and normalised by the ideal ordering.
"""
from __future__ import annotations

import numpy as np


def scores_to_ranks(scores: np.ndarray) -> np.ndarray:
    """[N, n_options] scores -> [N, n_options] 1-based ranks (1 = highest score; ties broken by option order)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, scores.shape[1] + 1)[None, :]
    return ranks


def ranking_metrics(scores: np.ndarray, gt_index: np.ndarray) -> dict[str, float]:
    """VisDial sparse metrics from option scores [N, n_options] and ground-truth option indices [N]."""
    scores = np.asarray(scores)
    gt_index = np.asarray(gt_index, dtype=int)
    if scores.ndim != 2 or len(scores) != len(gt_index):
        raise ValueError(f"scores must be [N, n_options] with one gt_index per row; got {scores.shape}, "
                         f"{gt_index.shape}")
    if len(scores) == 0:
        raise ValueError("ranking_metrics needs at least one round")
    gt_rank = scores_to_ranks(scores)[np.arange(len(scores)), gt_index].astype(np.float64)
    return {
        "r@1": float(np.mean(gt_rank <= 1)),
        "r@5": float(np.mean(gt_rank <= 5)),
        "r@10": float(np.mean(gt_rank <= 10)),
        "mean_rank": float(np.mean(gt_rank)),
        "mrr": float(np.mean(1.0 / gt_rank)),
    }


def worst_ranking_scores(n_options: int, gt_index: int, relevance=None) -> np.ndarray:
    """The option scores of the worst possible ranking, for a round that gives no basis to rank (an empty or missing
    answer): irrelevant options first, then the relevant ones by increasing relevance, the ground truth last. It
    earns the minimum of every ranking metric: R@k 0, MRR 1/n_options, mean rank n_options and, whenever more
    options are irrelevant than relevant, NDCG 0 (otherwise the least NDCG any such ordering can reach)."""
    scores = np.zeros(n_options) if relevance is None else -np.asarray(relevance, dtype=np.float64)
    if scores.shape != (n_options,):
        raise ValueError(f"relevance has {scores.shape} entries for {n_options} options")
    scores[gt_index] = scores.min() - 1.0
    return scores


def ndcg(scores: np.ndarray, relevance: np.ndarray) -> float:
    """VisDial NDCG: per round, DCG over the top-K ranked options (K = #relevant) over the ideal DCG."""
    scores = np.asarray(scores, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    if scores.shape != relevance.shape:
        raise ValueError(f"scores {scores.shape} and relevance {relevance.shape} must have the same shape")
    values = []
    for s, rel in zip(scores, relevance):
        k = int((rel > 0).sum())
        if k == 0:
            continue
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        ranked = rel[np.argsort(-s, kind="stable")][:k]
        ideal = np.sort(rel)[::-1][:k]
        values.append(float((ranked * discounts).sum() / (ideal * discounts).sum()))
    return float(np.mean(values)) if values else float("nan")


def bleu4_nltk(hypotheses: list[str], references: list[str]) -> float:
    """The EMR seeds' BLEU-4 (metrics key `bleu4_nltk`): nltk corpus_bleu on lower-cased whitespace tokens, 0-100,
    no smoothing. Short answers make it jump: a one-word hypothesis has no 2-, 3- or 4-grams, and nltk counts those
    orders as 0 matches of 1 rather than dropping them, so it differs a lot from `sacrebleu_corpus` on VisDial."""
    from nltk.translate.bleu_score import corpus_bleu

    hyps = [h.lower().split() for h in hypotheses]
    refs = [[r.lower().split()] for r in references]
    return 100.0 * float(corpus_bleu(refs, hyps))


def sacrebleu_corpus(hypotheses: list[str], references: list[str]) -> float:
    """sacreBLEU (metrics key `sacrebleu`): sacrebleu's corpus BLEU with its defaults (13a tokenizer, exponential
    smoothing), on the same 0-100 scale as `bleu4_nltk`. (The `<reminder>` seeds reported score / 100; we do not.)"""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def rouge_scores(hypotheses: list[str], references: list[str], types=("rouge1", "rouge2", "rougeL")) -> dict:
    """Mean ROUGE F1 over pairs (rouge-score, Porter stemmer on)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=True)
    totals = {t: 0.0 for t in types}
    for h, r in zip(hypotheses, references):
        s = scorer.score(r, h)
        for t in types:
            totals[t] += s[t].fmeasure
    n = max(1, len(hypotheses))
    return {t: totals[t] / n for t in types}
