"""The `<reminder>` evaluator: seed-format predictions scored against VisDial (rule evaluate_reminder, and a CLI):

    python -m mmemory.evaluate --predictions P.json --visdial V.json --out M.json [--dense D.json]

P is a JSON list of {"image_id", "conversation", "response"} (the seeds' format, read as it is). V is a VisDial
v1.0 JSON; the reference for an image_id is the answer of its dialogue's LAST round. The final answer is the text
after the last `</reminder>`, tags stripped, whitespace folded (`mmemory.reminder.response.final_answer`).

Every dialogue of V is scored (README, "Evaluation protocol" and "Data contracts"): `n` is the number of V's
dialogues. A prediction without a final answer (`n_no_final_answer`) and a dialogue of V without any prediction
(`n_missing_predictions`) both score as the empty answer: zero on every text metric and the worst case on every
ranking metric. Nothing is dropped, so a failing run cannot score above a working one.

Metrics (keys of M.json):
- `rouge1_f1`, `rouge2_f1`, `rougeL_f1`: ROUGE F1 (rouge-score, stemmer, mean over dialogues);
- `sacrebleu`: sacreBLEU corpus BLEU, 0-100 (`mmemory.metrics.sacrebleu_corpus`; the `<reminder>` seeds' BLEU);
- `bleu4_nltk`: the EMR seeds' nltk corpus BLEU-4, 0-100 (`mmemory.metrics.bleu4_nltk`), for comparison with EMR;
- `bertscore_p`, `bertscore_r`, `bertscore_f1`: bert-score (default model: the packaged all-MiniLM-L6-v2 with its 6
  layers, offline); an empty answer scores 0;
- `answer_similarity_ranking`, where the last round has answer options: R@1/5/10, MRR, mean rank (and NDCG where
  dense annotations cover that round) of the options ranked by MiniLM cosine similarity to the generated final
  answer. That is NOT VisDial's ranking, which scores the options by model likelihood (EMR does that); it measures
  how close the generated answer is to the right option. An empty or missing answer ranks the options worst-first:
  the ground truth last and every relevant option below the irrelevant ones (NDCG 0, R@k 0, MRR 1/#options).
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmemory.config import StrictConfig
from mmemory.io import atomic_write_json
from mmemory.metrics import bleu4_nltk, ndcg, ranking_metrics, rouge_scores, sacrebleu_corpus, worst_ranking_scores
from mmemory.reminder.response import final_answer
from mmemory.visdial import VisDialError, load_visdial, read_json

logger = logging.getLogger(__name__)


ANSWER_SIMILARITY_METHOD = ("options ranked by MiniLM similarity to the generated answer; not model likelihood "
                            "(VisDial's ranking); an empty or missing answer ranks the options worst-first")


# A response longer than this is cut to its first MAX_RESPONSE_CHARS characters before scoring (with a warning,
# counted in `n_responses_cut`): a runaway 10 MB generation otherwise cost a minute and 3 GB, and no VisDial answer
# or reminder comes near it.
MAX_RESPONSE_CHARS = 20_000


class PredictionError(ValueError):
    """A prediction file that cannot be scored as it is."""


@dataclass
class EvaluationConfig(StrictConfig):
    """config reminder.evaluation: how the predictions are scored (defaults: config.yaml's)."""

    SECTION = "reminder.evaluation"

    bertscore_model: str | None = None  # None: the packaged all-MiniLM-L6-v2 (offline); paper: roberta-large
    bertscore_layers: int = 6  # the BERTScore layer of bertscore_model (MiniLM: 6; roberta-large: 17)
    ranking: str = "minilm"  # minilm: rank the answer options by similarity to the generated answer | none


def load_predictions(path: str | Path) -> list[dict]:
    """Read a seed-format prediction file; a bad entry raises naming its index and image_id."""
    path = Path(path)
    try:
        raw = read_json(path)
    except VisDialError as e:
        raise PredictionError(str(e).replace("data.visdial.*", "--predictions")) from e
    if not isinstance(raw, list):
        raise PredictionError(f"{path}: must be a JSON list of {{image_id, conversation, response}}")
    out, seen = [], {}
    for i, p in enumerate(raw):
        where = f"{path}: entry {i}"
        if not isinstance(p, dict):
            raise PredictionError(f"{where}: not an object; each entry needs image_id and response")
        image_id = p.get("image_id")
        if isinstance(image_id, str) and image_id.strip().isdigit():
            image_id = int(image_id)
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise PredictionError(f"{where}: image_id {p.get('image_id')!r} is not an integer")
        where += f" (image_id={image_id})"
        if "response" not in p:
            raise PredictionError(f"{where}: no 'response'; write the model output there (use \"\" for none)")
        response = p["response"]
        if response is None:
            response = ""
        if not isinstance(response, str):
            raise PredictionError(f"{where}: response is {type(response).__name__}, expected a string")
        if image_id in seen:
            raise PredictionError(f"{where}: duplicate image_id (also entry {seen[image_id]}); keep one "
                                  "prediction per dialogue")
        seen[image_id] = i
        cut = len(response) > MAX_RESPONSE_CHARS
        if cut:  # as if generation had stopped there: what is past the limit is never scored
            logger.warning("%s: response of %d characters cut to the first %d (MAX_RESPONSE_CHARS)", where,
                           len(response), MAX_RESPONSE_CHARS)
            response = response[:MAX_RESPONSE_CHARS]
        out.append({"image_id": image_id, "conversation": p.get("conversation", ""), "response": response,
                    "cut": cut})
    return out


@functools.lru_cache(maxsize=2)
def _sentence_encoder(model_path: str, device: str):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path), AutoModel.from_pretrained(model_path).to(device).eval()


def _mean_pool_embed(texts: list[str], model_path: str, batch_size: int = 128, device: str = "cpu") -> np.ndarray:
    """L2-normalised mean-pooled sentence embeddings (all-MiniLM-L6-v2 style)."""
    import torch

    tok, model = _sentence_encoder(model_path, device)
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=64,
                        return_tensors="pt").to(device)
            h = model(**batch).last_hidden_state
            m = batch["attention_mask"].unsqueeze(-1).float()
            e = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(e, dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


@functools.lru_cache(maxsize=2)
def bertscorer(model: str, num_layers: int, batch_size: int = 64, device: str | None = None):
    """A loaded bert-score `BERTScorer` (no baseline rescaling), reusable across calls."""
    import torch
    from bert_score import BERTScorer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return BERTScorer(model_type=model, num_layers=num_layers, batch_size=batch_size, device=device)


def bertscore(hypotheses: list[str], references: list[str], model: str, num_layers: int, batch_size: int = 64,
              device: str | None = None, scorer=None) -> dict:
    """BERTScore P/R/F1 means with bert-score. Empty hypotheses score 0 (bert-score would warn and still embed)."""
    scorer = scorer or bertscorer(model, num_layers, batch_size, device)
    idx = [i for i, h in enumerate(hypotheses) if h.strip()]
    p = np.zeros(len(hypotheses))
    r, f = p.copy(), p.copy()
    if idx:
        P, R, F = scorer.score([hypotheses[i] for i in idx], [references[i] for i in idx])
        p[idx], r[idx], f[idx] = P.numpy(), R.numpy(), F.numpy()
    n = max(1, len(hypotheses))
    return {"bertscore_p": float(p.sum() / n), "bertscore_r": float(r.sum() / n), "bertscore_f1": float(f.sum() / n)}


def rank_options(answers: list[str], rounds: list[dict], answer_pool: list[str], model_path: str,
                 device: str = "cpu", relevance: list | None = None) -> np.ndarray:
    """[N, n_options] cosine similarities between each generated answer and its round's answer options (MiniLM
    sentence embeddings; answer similarity, not model likelihood). `relevance`: per round, its dense relevance
    (or None where the round is not annotated).

    An empty answer (no final answer, or no prediction at all) gets the worst possible ranking instead
    (`mmemory.metrics.worst_ranking_scores`): the ground truth last and relevant options below irrelevant ones, not
    whatever the empty string's embedding happens to be close to (it sits near short options such as "no")."""
    relevance = relevance or [None] * len(rounds)
    n_options = len(rounds[0]["answer_options"]) if rounds else 0
    if any(len(r["answer_options"]) != n_options for r in rounds):
        raise ValueError("every ranked round needs the same number of answer options")
    scores = np.zeros((len(rounds), n_options))
    live = [k for k, a in enumerate(answers) if a.strip()]
    if live:
        option_ids = sorted({o for k in live for o in rounds[k]["answer_options"]})
        pos = {o: i for i, o in enumerate(option_ids)}
        emb = _mean_pool_embed([answer_pool[o] for o in option_ids] + [answers[k] for k in live], model_path,
                               device=device)
        opt_emb, ans_emb = emb[: len(option_ids)], emb[len(option_ids):]
        for j, k in enumerate(live):
            scores[k] = opt_emb[[pos[o] for o in rounds[k]["answer_options"]]] @ ans_emb[j]
    for k, (a, r) in enumerate(zip(answers, rounds)):
        if not a.strip():
            scores[k] = worst_ranking_scores(n_options, r["gt_index"], relevance[k])
    return scores


def evaluate_predictions(predictions: list[dict], visdial_path: str | Path, dense_path: str | Path | None = None,
                         bertscore_model: str | None = EvaluationConfig.bertscore_model,
                         bertscore_layers: int | None = None, ranking: str = EvaluationConfig.ranking,
                         device: str | None = None) -> dict:
    """Score EVERY dialogue of `visdial_path` on its last round; returns the M.json content (module docstring).
    A dialogue without a prediction scores as the empty answer and is counted in `n_missing_predictions`.
    `bertscore_layers` None: the default model's layer (`EvaluationConfig`); another model needs its layer."""
    from mmemory.minilm import minilm_path

    split = load_visdial(visdial_path)
    dialogs = split.by_image_id()
    unknown = [p["image_id"] for p in predictions if p["image_id"] not in dialogs]
    if unknown:
        raise PredictionError(f"{len(unknown)} prediction(s) name image_ids absent from {visdial_path}, e.g. "
                              f"{unknown[:3]}; evaluate against the split the predictions were made on")
    if not predictions:
        raise PredictionError("no predictions to evaluate (an empty list: wrong file, or the run wrote nothing)")
    by_id = {p["image_id"]: p for p in predictions}
    hyps, refs, rounds, ids = [], [], [], []
    statuses = {"ok": 0, "no_reminder": 0, "no_final_answer": 0, "missing": 0}
    for d in split.dialogs:  # the reference file decides what is scored, in its order
        last = d["dialog"][-1]
        if "answer" not in last:
            raise PredictionError(f"{visdial_path}: image_id {d['image_id']}: the last round has no answer "
                                  "(a VisDial test file?); references need answers")
        p = by_id.get(d["image_id"])
        answer, status = final_answer(p["response"]) if p is not None else ("", "missing")
        statuses[status] += 1
        hyps.append(answer)
        refs.append(split.answer(last))
        rounds.append(last)
        ids.append(d["image_id"])
    model_name = bertscore_model
    if bertscore_model is None:
        model_name, bertscore_model = "all-MiniLM-L6-v2", minilm_path()
        bertscore_layers = bertscore_layers or EvaluationConfig.bertscore_layers
    if bertscore_layers is None:
        raise ValueError("set the number of BERTScore layers for a custom model (e.g. roberta-large: 17)")
    t0 = time.time()
    m = {"n": len(hyps), "n_predictions": len(predictions), "n_missing_predictions": statuses["missing"],
         "n_responses_cut": sum(bool(p.get("cut")) for p in predictions),
         "n_no_final_answer": statuses["no_final_answer"], "n_without_reminder": statuses["no_reminder"],
         "reference": "answer of the last round of every dialogue; a missing prediction scores as the empty answer",
         **{f"{k}_f1": v for k, v in rouge_scores(hyps, refs).items()},
         "sacrebleu": sacrebleu_corpus(hyps, refs), "bleu4_nltk": bleu4_nltk(hyps, refs)}
    m.update(bertscore(hyps, refs, bertscore_model, bertscore_layers, device=device))
    m["bertscore_model"] = model_name
    m["bertscore_layers"] = bertscore_layers
    has_options = all("answer_options" in r and "gt_index" in r for r in rounds)
    if ranking != "none" and has_options:
        dense = ({(a["image_id"], a["round_id"]): a["gt_relevance"] for a in read_json(dense_path)}
                 if dense_path else {})
        keys = [(i, len(dialogs[i]["dialog"])) for i in ids]
        relevance = [dense.get(key) for key in keys]
        scores = rank_options(hyps, rounds, split.answers, minilm_path(), device or "cpu", relevance)
        m["answer_similarity_ranking"] = {
            **ranking_metrics(scores, np.array([r["gt_index"] for r in rounds])),
            "method": ANSWER_SIMILARITY_METHOD}
        rows = [k for k, rel in enumerate(relevance) if rel is not None]
        if rows:
            m["answer_similarity_ranking"]["ndcg"] = ndcg(scores[rows], np.array([relevance[k] for k in rows]))
            m["answer_similarity_ranking"]["ndcg_rounds"] = len(rows)
    m.update(exact_match_items(split, ids, hyps, refs))
    m["eval_seconds"] = round(time.time() - t0, 1)
    return m


def question_group(dialog: dict) -> str:
    """"earlier" when the last question asks about an earlier picture of the user (toy users), else "current"."""
    memory = dialog.get("memory")
    return "earlier" if isinstance(memory, dict) and memory.get("asks_about") is not None else "current"


def exact_match_items(split, ids: list[int], hyps: list[str], refs: list[str]) -> dict:
    """Exact match of the final answer (case and surrounding space ignored), overall and per question group, and
    the per-dialogue items the reminder table pairs across variants (`per_item`)."""
    dialogs = split.by_image_id()
    items = [{"image_id": i, "group": question_group(dialogs[i]), "answer": h, "reference": r,
              "exact": int(h.strip().lower() == r.strip().lower())} for i, h, r in zip(ids, hyps, refs)]
    groups = sorted({it["group"] for it in items})
    by = {g: [it["exact"] for it in items if it["group"] == g] for g in groups}
    return {"exact_match": float(np.mean([it["exact"] for it in items])) if items else 0.0,
            "exact_match_by_group": {g: float(np.mean(v)) for g, v in by.items()},
            "n_by_group": {g: len(v) for g, v in by.items()}, "per_item": items}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmemory.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictions", required=True, help="seed-format JSON: [{image_id, conversation, response}]")
    ap.add_argument("--visdial", required=True, help="VisDial v1.0 JSON with the reference dialogues")
    ap.add_argument("--out", required=True, help="where to write the metrics JSON")
    ap.add_argument("--dense", help="VisDial dense annotations (adds NDCG where the last round is annotated)")
    ap.add_argument("--bertscore-model", help="BERTScore model path or name (default: packaged all-MiniLM-L6-v2)")
    ap.add_argument("--bertscore-layers", type=int, help="layer to use (MiniLM: 6, roberta-large: 17)")
    ap.add_argument("--ranking", choices=["minilm", "none"], default=EvaluationConfig.ranking,
                    help="answer_similarity_ranking: rank the answer options by MiniLM similarity to the generated "
                         "answer (not model likelihood), or skip it")
    ap.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        preds = load_predictions(args.predictions)
        m = evaluate_predictions(preds, args.visdial, args.dense, args.bertscore_model, args.bertscore_layers,
                                 args.ranking, args.device)
    except (PredictionError, VisDialError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m["predictions"] = str(args.predictions)
    atomic_write_json(args.out, m, indent=2)
    print(json.dumps({k: v for k, v in m.items() if not isinstance(v, dict)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
