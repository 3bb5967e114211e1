"""EMR evaluation: `pytest tests/test_emr_eval.py` (offline; a tiny toy world built in a temp dir).

Checks the ranking-round selection, that every evaluated prompt is the question alone (never its answer), the
metrics' shape, and that a rerun resumes instead of redoing finished dialogues.
"""
from __future__ import annotations

import json

import pytest

from _emr_fixtures import make_toy_world
from mmemory.emr import evaluate as eval_mod
from mmemory.emr.data import DialogRecord, extract_split
from mmemory.emr.evaluate import evaluate_emr, rank_rounds
from mmemory.encoders import load_encoder
from mmemory.visdial import load_visdial

BRIDGE = dict(embed_dim=32, hidden_size=16, num_query_tokens=2, qformer_hidden_size=16, qformer_layers=1,
              qformer_heads=2, qformer_intermediate_size=32, cross_attention_frequency=1, memory_bank_length=3,
              trainable=["imagebind_fc", "ln_vision", "turn_pe", "query_tokens", "qformer", "llm_proj"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("emr_eval")
    w = make_toy_world(root, n_train=2, n_val=3)
    enc = load_encoder("clip", w["clip"])
    w["val_emb"] = str(root / "emb" / "val")
    extract_split(w["val"], w["val_emb"], enc, shard_size=8)
    return w


def _rec(image_id, rounds=10):
    return DialogRecord(image_id, f"image/{image_id}", [f"q/{image_id}/{r}" for r in range(rounds)],
                        ["q"] * rounds, ["a"] * rounds, [["a", "b"]] * rounds, [0] * rounds)


def test_rank_rounds_keeps_every_dense_round_then_samples():
    recs = [_rec(i) for i in range(5)]
    dense = [{"image_id": i, "round_id": 3 + i} for i in range(5)]
    assert len(rank_rounds(recs, dense, None)) == 50
    chosen = rank_rounds(recs, dense, 12)
    assert len(chosen) == 12 and len(set(chosen)) == 12
    assert {(i, 2 + i) for i in range(5)} <= set(chosen)  # all dense-annotated rounds (0-based round index)
    assert chosen == rank_rounds(recs, dense, 12)  # deterministic


def test_evaluated_prompts_never_contain_their_target(world, tmp_path, monkeypatch):
    seen = []
    real_gen, real_rank = eval_mod.generate_answers, eval_mod.option_log_likelihood

    def spy_gen(llm, codec, soft, prompts, *a, **k):
        seen.extend(codec.decode(p) for p in prompts)
        return real_gen(llm, codec, soft, prompts, *a, **k)

    def spy_rank(llm, soft, prompts, options, *a, **k):
        assert len(set(map(tuple, prompts))) == 1  # one question; every option is scored after the same prompt
        return real_rank(llm, soft, prompts, options, *a, **k)

    monkeypatch.setattr(eval_mod, "generate_answers", spy_gen)
    monkeypatch.setattr(eval_mod, "option_log_likelihood", spy_rank)
    evaluate_emr(world["val"], world["val_emb"], world["llm"], tmp_path / "eval.json", bridge=BRIDGE,
                 variant="before", val_dense=world["val_dense"], num_beams=2, max_new_tokens=4,
                 rank_max_rounds=4)
    split = load_visdial(world["val"])
    expected = [f"question: {split.question(r)} answer:" for d in split.dialogs for r in d["dialog"]]
    assert seen == expected  # exactly the question in the template: the answer is never part of the input


def test_metrics_and_resume(world, tmp_path, monkeypatch):
    out = tmp_path / "before" / "eval.json"
    m = evaluate_emr(world["val"], world["val_emb"], world["llm"], out, bridge=BRIDGE, variant="before",
                     val_dense=world["val_dense"], num_beams=2, max_new_tokens=4, batch_dialogs=2,
                     rank_max_rounds=5)
    for k in ("bleu4_nltk", "sacrebleu", "rougeL", "mrr", "r@1", "r@5", "r@10", "mean_rank", "ndcg"):
        assert k in m
    assert "bleu4" not in m and "bleu" not in m  # each BLEU under a name that says which
    assert m["n_generated_rounds"] == 30 and m["n_ranked_rounds"] == 5 and m["n_ndcg_rounds"] == 3
    assert 0 <= m["bleu4_nltk"] <= 100 and 0 <= m["sacrebleu"] <= 100
    assert 0 < m["mrr"] <= 1 and 1 <= m["mean_rank"] <= 100
    assert json.loads(out.read_text())["mrr"] == m["mrr"]
    preds = next(out.parent.glob("work*/predictions.jsonl")).read_text().splitlines()
    assert len(preds) == 30

    # killed in the second batch: the rerun evaluates only the unfinished dialogue and gives the same metrics
    real, calls = eval_mod.generate_answers, []

    def counting(llm, codec, soft, *a, **k):
        calls.append(soft.shape[0])
        if len(calls) == 2 and killed["on"]:
            raise KeyboardInterrupt("killed")
        return real(llm, codec, soft, *a, **k)

    killed = {"on": True}
    monkeypatch.setattr(eval_mod, "generate_answers", counting)
    cut = tmp_path / "killed" / "eval.json"
    kw = dict(bridge=BRIDGE, variant="before", val_dense=world["val_dense"], num_beams=2, max_new_tokens=4,
              batch_dialogs=2, rank_max_rounds=5)
    with pytest.raises(KeyboardInterrupt):
        evaluate_emr(world["val"], world["val_emb"], world["llm"], cut, **kw)
    killed["on"], calls[:] = False, []
    again = evaluate_emr(world["val"], world["val_emb"], world["llm"], cut, **kw)
    assert calls == [10]  # one dialogue of 10 rounds left; the finished two were not evaluated again
    calls[:] = []
    evaluate_emr(world["val"], world["val_emb"], world["llm"], cut, **kw)
    assert sum(calls) == 30  # a finished evaluation run again (output missing, or forced) evaluates everything
    assert again["mrr"] == m["mrr"] and again["bleu4_nltk"] == m["bleu4_nltk"] and again["sacrebleu"] == m["sacrebleu"]


def test_changed_settings_discard_partial_results(world, tmp_path):
    out = tmp_path / "v" / "eval.json"
    kw = dict(bridge=BRIDGE, variant="before", val_dense=world["val_dense"], num_beams=1, max_new_tokens=3,
              rank_max_rounds=3)
    evaluate_emr(world["val"], world["val_emb"], world["llm"], out, **kw)
    m = evaluate_emr(world["val"], world["val_emb"], world["llm"], out, **{**kw, "rank_max_rounds": 6})
    assert m["n_ranked_rounds"] == 6 and m["n_generated_rounds"] == 30


def test_left_padding_does_not_change_scores_or_generations(world):
    import torch

    from mmemory.emr.lm import TextCodec, generate_answers, load_llm, option_log_likelihood

    llm, tok = load_llm(world["llm"])
    codec = TextCodec(tok)
    torch.manual_seed(0)
    soft = torch.randn(2, 2, llm.config.hidden_size)
    prompts = [codec.prompt_ids("is there a red circle?"),
               codec.prompt_ids("what color is the square at the top left of the picture?")]
    opts = [codec.answer_ids("yes"), codec.answer_ids("at the top left")]
    both = option_log_likelihood(llm, soft, prompts, opts, tok.pad_token_id, lead=codec.lead_ids())
    alone = [option_log_likelihood(llm, soft[i:i + 1], prompts[i:i + 1], opts[i:i + 1], tok.pad_token_id,
                                   lead=codec.lead_ids()) for i in range(2)]
    torch.testing.assert_close(both, torch.cat(alone), atol=1e-4, rtol=1e-4)
    gen_both = generate_answers(llm, codec, soft, prompts, num_beams=2, max_new_tokens=5)
    gen_alone = [generate_answers(llm, codec, soft[i:i + 1], prompts[i:i + 1], num_beams=2, max_new_tokens=5)[0]
                 for i in range(2)]
    assert gen_both == gen_alone


def test_4bit_lm_path(world, tmp_path):
    """The paper's 4-bit NF4 LM (BitsAndBytesConfig) on a tiny Llama: bitsandbytes 0.50 runs it on the CPU."""
    import torch
    from transformers import AutoTokenizer

    bnb = pytest.importorskip("bitsandbytes")
    from mmemory.emr.lm import TextCodec, answer_loss, generate_answers, load_llm, option_log_likelihood
    from mmemory.toy.models import ToySizes, build_tiny_llama

    # widths that bitsandbytes' CPU 4-bit kernel accepts (multiples of 32 in every projection)
    build_tiny_llama(AutoTokenizer.from_pretrained(world["tokenizer"]),
                     ToySizes(hidden_size=64, num_layers=1, num_heads=4), tmp_path / "llm")
    llm, tok = load_llm(str(tmp_path / "llm"), load_in_4bit=True, device="cpu", dtype="bfloat16")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in llm.modules())
    codec = TextCodec(tok)
    soft = torch.randn(2, 2, llm.config.hidden_size, requires_grad=True)  # the bridge stays fp32
    prompts = [codec.prompt_ids("is there a red circle?"), codec.prompt_ids("what color is the square?")]
    answers = [codec.answer_ids("yes"), codec.answer_ids("red")]
    loss = answer_loss(llm, soft, prompts, answers, tok.pad_token_id, codec.lead_ids())
    loss.backward()
    assert torch.isfinite(loss) and soft.grad.abs().sum() > 0  # gradients reach the bridge through the 4-bit LM
    assert len(generate_answers(llm, codec, soft.detach(), prompts, num_beams=2, max_new_tokens=3)) == 2
    s = option_log_likelihood(llm, soft.detach(), prompts, answers, tok.pad_token_id, lead=codec.lead_ids())
    assert s.shape == (2,) and torch.isfinite(s).all()


def _split(path, split, qa_dialogs, first_id):
    questions = sorted({q for d in qa_dialogs for q, _ in d})
    answers = sorted({a for d in qa_dialogs for _, a in d})
    dialogs = [{"image_id": first_id + i, "caption": "a picture", "dialog": [
        {"question": questions.index(q), "answer": answers.index(a)} for q, a in d]} for i, d in enumerate(qa_dialogs)]
    path.write_text(json.dumps({"version": "1.0", "split": split,
                                "data": {"questions": questions, "answers": answers, "dialogs": dialogs}}))
    return str(path)


def test_question_prior_answers_without_the_image(tmp_path):
    """The no-image baseline answers with the most frequent train answer to the same question, else to its type."""
    from mmemory.emr.evaluate import question_prior

    train = _split(tmp_path / "train.json", "train", [
        [("what color is the circle?", "red"), ("where is the red circle?", "on the left")],
        [("what color is the circle?", "red"), ("where is the blue square?", "at the top")],
        [("what color is the circle?", "blue"), ("where is the blue square?", "at the top")],
    ], 1)
    val = _split(tmp_path / "val.json", "val", [
        [("what color is the circle?", "red"), ("where is the green circle?", "at the top")],  # unseen: by type
        [("what color is the circle?", "blue"), ("where is the red circle?", "in the center")],
    ], 100)
    m = question_prior(train, val)
    assert m["variant"] == "question_prior" and m["n_generated_rounds"] == 4
    assert m["exact_match_by_question_type"] == {"what color": 0.5, "where is": 0.5}
    assert m["exact_match"] == 0.5 and 0 <= m["rougeL"] <= 1


def test_emr_table_names_both_bleus_on_one_scale(tmp_path):
    """The EMR table gives the seeds' nltk BLEU-4 and sacreBLEU side by side, each column saying which it is."""
    from mmemory.emr.report import BLEU4_COLUMN, SACREBLEU_COLUMN, emr_metrics

    evals = {}
    for v, (b, s) in {"before": (1.5, 20.0), "after": (6.25, 41.0)}.items():
        p = tmp_path / f"{v}.json"
        p.write_text(json.dumps({"variant": v, "bleu4_nltk": b, "sacrebleu": s, "rougeL": 0.3, "exact_match": 0.2,
                                 "mrr": 0.5, "n_generated_rounds": 10, "n_ranked_rounds": 10}))
        evals[v] = [str(p)]
    loss = tmp_path / "after" / "s0" / "loss.csv"
    loss.parent.mkdir(parents=True)
    loss.write_text("step,split,loss\n1,train,2.0\n2,val,1.5\n")
    m = emr_metrics(evals, [str(loss)], [], [], [], tmp_path / "metrics.json", tmp_path / "loss.png", BRIDGE)
    rows = next(iter(m["tables"].values()))
    assert "BLEU-4" in BLEU4_COLUMN and "nltk" in BLEU4_COLUMN and "0-100" in BLEU4_COLUMN
    assert "sacreBLEU" in SACREBLEU_COLUMN and "0-100" in SACREBLEU_COLUMN
    assert [(r[BLEU4_COLUMN], r[SACREBLEU_COLUMN]) for r in rows] == [(1.5, 20.0), (6.25, 41.0)]
    assert not any(k in ("BLEU", "BLEU-4") for r in rows for k in r)  # no bare BLEU column
    assert m["headline"]["EMR BLEU-4 (nltk) after"] == 6.25 and m["headline"]["EMR sacreBLEU after"] == 41.0
    assert set(m["bleu"]) == {"bleu4_nltk", "sacrebleu"}


def test_emr_rows_average_the_seeds_and_differences_need_the_spread(tmp_path):
    from mmemory.emr.report import BLEU4_COLUMN, emr_metrics

    evals = {}
    for v, bleus in {"before": (1.0, 1.2, 1.4), "after": (5.0, 6.0, 7.0), "no_memory_bank": (5.5, 6.5, 7.5)}.items():
        evals[v] = []
        for seed, b in enumerate(bleus):
            p = tmp_path / f"{v}{seed}.json"
            p.write_text(json.dumps({"variant": v, "bleu4_nltk": b, "sacrebleu": 10 * b, "rougeL": 0.3,
                                     "exact_match": 0.2, "mrr": 0.5, "n_generated_rounds": 10}))
            evals[v].append(str(p))
    m = emr_metrics(evals, [], [], [], [], tmp_path / "metrics.json", tmp_path / "loss.png", BRIDGE)
    title, rows = next(iter(m["tables"].items()))
    assert "test" in title and "mean over 3 training seeds" in title
    assert [r[BLEU4_COLUMN] for r in rows] == [1.2, 6.0, 6.5] and rows[0]["seeds"] == 3
    spread = m["tables"]["Seed-to-seed spread of the EMR rows (sample std over train_seeds)"]
    assert spread[1]["BLEU-4 (nltk, 0-100)"] == 1.0
    diffs = {(d["comparison"], d["metric"]): d for d in next(v for k, v in m["tables"].items()
                                                              if k.startswith("Differences"))}
    assert diffs[("after − before", "BLEU-4 (nltk, 0-100)")]["verdict"] == "gain"
    assert diffs[("after − no_memory_bank", "BLEU-4 (nltk, 0-100)")]["verdict"] == "within the spread"
