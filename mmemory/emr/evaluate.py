"""`eval_emr`: generation metrics (beam search; `bleu4_nltk`: BLEU-4 as the seeds computed it, nltk, 0-100;
`sacrebleu`: sacreBLEU, 0-100, the `<reminder>` stage's BLEU, so the stages can be compared; ROUGE-L) and VisDial
ranking metrics (the 100 answer options scored by LM log-likelihood: MRR, R@1/5/10, mean rank; NDCG on the dense
annotations).

    snakemake results/emr/after/s0/eval_test.json --cores 2

Predictions and option scores are appended to a work folder next to the output (`*.jsonl`) batch by batch. The
folder carries the run's fingerprint (`mmemory.fingerprint`: the content of the val JSON, dense annotations and
embeddings, the settings, the bridge weights and the LM's files): after a kill, a rerun of the same fingerprint skips
the finished dialogues; another fingerprint, or a rerun of a finished evaluation (its output missing, or forced),
discards them and says why.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmemory.emr.bridge import BridgeConfig, load_bridge
from mmemory.emr.data import batch_embeddings, dialog_records
from mmemory.config import StrictConfig
from mmemory.emr.lm import EmrConfig, TextCodec, generate_answers, load_llm, option_log_likelihood
from mmemory.emr.train import TrainConfig, make_bridge
from mmemory.fingerprint import Fingerprint, Run, file_digest, file_digests, model_digest
from mmemory.io import append_jsonl, atomic_write_json, read_jsonl
from mmemory.metrics import bleu4_nltk, ndcg, ranking_metrics, rouge_scores, sacrebleu_corpus
from mmemory.shards import ShardedEmbeddings
from mmemory.visdial import load_visdial

logger = logging.getLogger(__name__)


def rank_rounds(records, dense: list[dict] | None, max_rounds: int | None, seed: int = 0) -> list[tuple[int, int]]:
    """(record index, 0-based round) pairs whose options are ranked: every dense-annotated round first, then a
    seeded sample of the other rounds up to max_rounds (None: all rounds)."""
    all_pairs = [(i, r) for i, rec in enumerate(records) for r in range(len(rec.questions))]
    if max_rounds is None or max_rounds >= len(all_pairs):
        return all_pairs
    pos = {rec.image_id: i for i, rec in enumerate(records)}
    dense_pairs = [(pos[d["image_id"]], d["round_id"] - 1) for d in (dense or []) if d["image_id"] in pos]
    chosen = list(dict.fromkeys(dense_pairs))[:max_rounds]
    rest = [p for p in all_pairs if p not in set(chosen)]
    rng = np.random.default_rng(seed)
    extra = max(0, max_rounds - len(chosen))
    chosen += [rest[i] for i in sorted(rng.choice(len(rest), size=min(extra, len(rest)), replace=False))]
    return sorted(chosen)


def question_type(question: str) -> str:
    """VQA-style question type: the first two words ("what color", "where is")."""
    return " ".join(question.split()[:2])


def generation_metrics(preds: list[dict]) -> dict:
    """`bleu4_nltk` (the seeds' BLEU-4, 0-100), `sacrebleu` (0-100), ROUGE-L and exact match of {"question",
    "answer", "prediction"} rows, overall and per question type (shows whether answers follow the image or a prior)."""
    hyps, refs = [p["prediction"] for p in preds], [p["answer"] for p in preds]
    by_type: dict[str, list[bool]] = {}
    for p in preds:
        by_type.setdefault(question_type(p["question"]), []).append(p["prediction"] == p["answer"])
    return {"bleu4_nltk": bleu4_nltk(hyps, refs), "sacrebleu": sacrebleu_corpus(hyps, refs),
            "rougeL": rouge_scores(hyps, refs, ("rougeL",))["rougeL"],
            "exact_match": float(np.mean([h == r for h, r in zip(hyps, refs)])) if hyps else 0.0,
            "n_generated_rounds": len(preds),
            "exact_match_by_question_type": {t: round(float(np.mean(v)), 4) for t, v in sorted(by_type.items())}}


def question_prior(train_json, val_json) -> dict:
    """The no-image baseline: answer each round of `val_json` (any evaluated split) with the most frequent TRAIN
    answer to the same question text (else to its question type, else overall). What an answerer that never looks
    at the image can reach."""
    from collections import Counter

    train = load_visdial(train_json)
    by_q: dict[str, Counter] = {}
    by_t: dict[str, Counter] = {}
    overall: Counter = Counter()
    for d in train.dialogs:
        for r in d["dialog"]:
            q, a = train.question(r), train.answer(r)
            by_q.setdefault(q, Counter())[a] += 1
            by_t.setdefault(question_type(q), Counter())[a] += 1
            overall[a] += 1
    val = load_visdial(val_json)
    preds = []
    for d in val.dialogs:
        for r in d["dialog"]:
            q = val.question(r)
            pick = by_q.get(q) or by_t.get(question_type(q)) or overall
            preds.append({"question": q, "answer": val.answer(r), "prediction": pick.most_common(1)[0][0]})
    return {"variant": "question_prior", **generation_metrics(preds), "n_dialogues": len(val.dialogs)}


@dataclass
class EmrEvalConfig(StrictConfig):
    """Generation and ranking settings: config emr.eval (defaults: config.yaml's; the seeds' in comments)."""

    SECTION = "emr.eval"

    num_beams: int = 5  # beam search width (seeds: 5)
    max_new_tokens: int = 30  # generation length limit (seeds: 30)
    batch_dialogs: int = 16  # dialogues per generation batch (x rounds x beams sequences)
    max_dialogs: int | None = None  # evaluate at most this many dialogues of the split (None: all)
    rank_max_rounds: int | None = 100  # rounds whose options are ranked: dense-annotated ones + a seeded sample
    length_normalize: bool = False  # rank options by mean instead of summed token log-likelihood


def evaluate_emr(val_json, val_emb, llm_path: str, out_json, bridge_dir=None, bridge: dict | None = None,
                 train: dict | None = None, variant: str = "before", val_dense=None,
                 num_beams: int = EmrEvalConfig.num_beams, max_new_tokens: int = EmrEvalConfig.max_new_tokens,
                 batch_dialogs: int = EmrEvalConfig.batch_dialogs, max_dialogs: int | None = EmrEvalConfig.max_dialogs,
                 rank_max_rounds: int | None = EmrEvalConfig.rank_max_rounds,
                 length_normalize: bool = EmrEvalConfig.length_normalize, llm_4bit: bool = EmrConfig.llm_4bit,
                 llm_dtype: str = EmrConfig.llm_dtype, prompt_template: str = EmrConfig.prompt_template,
                 device: str = EmrConfig.device) -> dict:
    """Evaluate one variant. bridge_dir=None evaluates the freshly initialised bridge ("before fine-tuning"),
    built with the same seed and config the training starts from."""
    out_json = Path(out_json)
    work = out_json.parent / f"work_{out_json.stem}"  # one per evaluated split
    split = load_visdial(val_json)
    emb = ShardedEmbeddings(val_emb)
    records, skipped = dialog_records(split, emb)
    if max_dialogs:
        records = records[:max_dialogs]
    dense = json.loads(Path(val_dense).read_text()) if val_dense else None

    if bridge_dir:  # a variant trained with emr.llm_trainable carries its own LM
        llm_path = json.loads((Path(bridge_dir) / "bridge_config.json").read_text()).get("llm", llm_path)
    llm, tok = load_llm(llm_path, llm_4bit, device, llm_dtype)
    codec = TextCodec(tok, prompt_template)
    hidden = llm.get_input_embeddings().embedding_dim
    if bridge_dir:
        model = load_bridge(bridge_dir, hidden)
    else:
        seed = TrainConfig.from_dict(train or {}).seed
        model = make_bridge(BridgeConfig.from_dict(bridge or {}), hidden, seed)
    model = model.to(device).eval()
    model.log_weights()

    fp = Fingerprint(
        inputs={**file_digests(val_json, val_dense), "embeddings": file_digest(emb.index_path)},
        settings={"variant": variant, "beams": num_beams, "max_new_tokens": max_new_tokens, "max_dialogs": max_dialogs,
                  "rank_max_rounds": rank_max_rounds, "length_normalize": length_normalize, "llm_4bit": llm_4bit,
                  "llm_dtype": llm_dtype, "prompt": prompt_template, "bridge": asdict(model.cfg),
                  "seed": None if bridge_dir else TrainConfig.from_dict(train or {}).seed},
        models={"llm": model_digest(llm_path),
                "bridge": model_digest(Path(bridge_dir) / "bridge.safetensors") if bridge_dir else "",
                "qformer": "" if bridge_dir else model_digest(BridgeConfig.from_dict(bridge or {}).qformer_checkpoint)})
    run = Run(work / "run.json", fp, f"eval_emr {variant} ({out_json.name})")
    run.begin(clear=lambda: [f.unlink() for f in work.glob("*.jsonl")])

    to_rank = rank_rounds(records, dense, rank_max_rounds)
    rank_by_rec: dict[int, list[int]] = {}
    for i, r in to_rank:
        rank_by_rec.setdefault(i, []).append(r)

    pred_path, score_path = work / "predictions.jsonl", work / "option_scores.jsonl"
    done = {row["image_id"] for row in read_jsonl(pred_path)} if pred_path.exists() else set()
    todo = [i for i, r in enumerate(records) if r.image_id not in done]
    if done:
        logger.info("resuming: %d/%d dialogues already evaluated", len(done), len(records))
    t0 = time.perf_counter()
    variation = []  # how much the soft prompt varies across dialogues, relative to its size (0: input-independent)
    with torch.no_grad():
        for b in tqdm(range(0, len(todo), batch_dialogs), desc=f"eval_emr {variant}", unit="batch"):
            idx = todo[b:b + batch_dialogs]
            groups = {}
            for i in idx:  # equal round counts per forward pass
                groups.setdefault(len(records[i].questions), []).append(i)
            preds, scores = [], []
            for _, gidx in groups.items():
                grecs = [records[i] for i in gidx]
                img, q = batch_embeddings(grecs, emb, device)
                soft = model.query_outputs(img, q)  # [B, R, Q, E]
                R = soft.shape[1]
                if len(grecs) > 1:
                    variation.append(float(soft.std(0).mean() / soft.abs().mean().clamp(min=1e-12)))
                prompts = [codec.prompt_ids(qq) for r in grecs for qq in r.questions]
                gen = generate_answers(llm, codec, soft.reshape(-1, *soft.shape[2:]), prompts, num_beams,
                                       max_new_tokens)
                for k, (i, r) in enumerate(zip(gidx, grecs)):
                    for t in range(R):
                        preds.append({"image_id": r.image_id, "round": t + 1, "question": r.questions[t],
                                      "answer": r.answers[t], "prediction": gen[k * R + t]})
                    for t in rank_by_rec.get(i, []):
                        opts = r.options[t]
                        if not opts:
                            raise ValueError(f"{val_json}: dialog image_id={r.image_id} round {t + 1} has no "
                                             f"answer_options to rank")
                        opt_ids = [codec.answer_ids(o) for o in opts]
                        s = option_log_likelihood(llm, soft[k, t][None].expand(len(opts), -1, -1),
                                                  [codec.prompt_ids(r.questions[t])] * len(opts), opt_ids,
                                                  tok.pad_token_id, length_normalize, codec.lead_ids())
                        scores.append({"image_id": r.image_id, "round": t + 1, "gt_index": r.gt_index[t],
                                       "scores": [round(float(x), 5) for x in s]})
            append_jsonl(score_path, scores)  # scores first: a dialogue counts as done once its predictions land
            append_jsonl(pred_path, preds)
    el = time.perf_counter() - t0
    preds = read_jsonl(pred_path)
    scores = read_jsonl(score_path) if score_path.exists() else []
    keep = {r.image_id for r in records}
    preds = [p for p in preds if p["image_id"] in keep]
    scores = list({(s["image_id"], s["round"]): s for s in scores if s["image_id"] in keep}.values())

    metrics = {"variant": variant, **generation_metrics(preds), "n_dialogues": len(records),
               "skipped_quarantined": skipped}
    if scores:
        S = np.array([s["scores"] for s in scores])
        metrics.update(ranking_metrics(S, np.array([s["gt_index"] for s in scores])))
        metrics["n_ranked_rounds"] = len(scores)
        if dense:
            rel = {(d["image_id"], d["round_id"]): d["gt_relevance"] for d in dense}
            pairs = [(s["scores"], rel[(s["image_id"], s["round"])]) for s in scores
                     if (s["image_id"], s["round"]) in rel]
            if pairs:
                metrics["ndcg"] = ndcg(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
                metrics["n_ndcg_rounds"] = len(pairs)
    metrics["ranking_subset"] = ("all rounds" if rank_max_rounds is None else
                                 f"every dense-annotated round plus a seeded sample, {len(scores)} rounds in all")
    if variation:  # a bridge whose soft prompt does not vary with the dialogue cannot carry image content
        metrics["soft_prompt_relative_std"] = float(np.mean(variation))
    metrics["seconds_this_run"] = round(el, 1)
    metrics["examples"] = preds[:5]
    atomic_write_json(out_json, metrics, indent=2)
    run.finish()  # a rerun (output missing, or forced) evaluates again
    logger.info("eval_emr %s: BLEU-4 (nltk) %.2f sacreBLEU %.2f ROUGE-L %.3f MRR %s (%.1fs)", variant,
                metrics["bleu4_nltk"], metrics["sacrebleu"], metrics["rougeL"], metrics.get("mrr"), el)
    return metrics
