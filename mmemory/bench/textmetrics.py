"""Text-metric throughput: `python -m mmemory.bench textmetrics [--n 1500] [--threads 2]`.

Times ROUGE-1/2/L + sacreBLEU over N synthetic predictions (goal: <= 5 s for 1,500) and BERTScore with the
packaged all-MiniLM-L6-v2 over N pairs (goal: <= 60 s for 1,500 on 2 cores). Prints the figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import random
import time


def synthetic_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """VisDial-like short references and `<reminder>`-style final answers of similar length."""
    rng = random.Random(seed)
    words = ("yes no one two three red blue green white black man woman dog cat table window left right "
             "wooden small large outside inside sitting standing holding the a it is there i think maybe").split()
    refs = [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(n)]
    hyps = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(n)]
    return hyps, refs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmemory.bench textmetrics", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1500, help="predictions / pairs to score")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads for BERTScore")
    ap.add_argument("--batch-size", type=int, default=64, help="BERTScore batch size")
    args = ap.parse_args(argv)
    t_import = time.perf_counter()
    import rouge_score.rouge_scorer  # noqa: F401  (imports are timed apart from scoring)
    import sacrebleu  # noqa: F401
    import torch

    from mmemory.reminder.evaluate import bertscore, bertscorer
    from mmemory.metrics import rouge_scores, sacrebleu_corpus
    from mmemory.minilm import minilm_path

    torch.set_num_threads(args.threads)
    print(f"imports: {time.perf_counter() - t_import:.2f} s")
    hyps, refs = synthetic_pairs(args.n)
    t0 = time.perf_counter()
    rouge = rouge_scores(hyps, refs)
    t1 = time.perf_counter()
    sacrebleu_score = sacrebleu_corpus(hyps, refs)
    t2 = time.perf_counter()
    print(f"ROUGE-1/2/L over {args.n} predictions: {t1 - t0:.2f} s  (rouge1 {rouge['rouge1']:.3f})")
    print(f"sacreBLEU (corpus) over {args.n} predictions: {t2 - t1:.2f} s  (sacreBLEU {sacrebleu_score:.2f} of 100)")
    print(f"ROUGE + sacreBLEU: {t2 - t0:.2f} s  (goal <= 5 s for 1,500)")
    t3 = time.perf_counter()
    scorer = bertscorer(minilm_path(), 6, batch_size=args.batch_size, device="cpu")
    t4 = time.perf_counter()
    bs = bertscore(hyps, refs, minilm_path(), 6, scorer=scorer)
    t5 = time.perf_counter()
    print(f"BERTScore model load (all-MiniLM-L6-v2): {t4 - t3:.2f} s")
    print(f"BERTScore (layer 6, {args.threads} threads) over {args.n} pairs: {t5 - t4:.2f} s  "
          f"(F1 {bs['bertscore_f1']:.3f}; goal <= 60 s for 1,500)")
    return 0
