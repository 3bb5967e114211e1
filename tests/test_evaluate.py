"""The generation evaluation CLI on seed-format prediction files: final answers, counts, metrics, ranking, errors.

Run: pytest tests/test_evaluate.py
"""
import json
import runpy
import sys

import pytest
from _reminder_fixtures import shared_world

from mmemory.reminder.evaluate import PredictionError, evaluate_predictions, load_predictions, main
from mmemory.visdial import load_visdial


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_world()


@pytest.fixture(scope="module")
def refs(world):
    split = load_visdial(world["val"])
    return {d["image_id"]: split.answer(d["dialog"][-1]) for d in split.dialogs}


def write(tmp_path, rows, name="P.json"):
    p = tmp_path / name
    p.write_text(json.dumps(rows))
    return p


def test_seed_format_file_scores_with_counts(world, refs, tmp_path):
    ids = list(refs)
    rows = [
        {"image_id": ids[0], "conversation": "Q: ...", "response": f"<reminder>recall</reminder>\n{refs[ids[0]]}"},
        {"image_id": str(ids[1]), "conversation": "Q: ...", "response": refs[ids[1]]},  # no tag; id as a string
        {"image_id": ids[2], "conversation": "Q: ...", "response": "<reminder>cut off before the end"},
        {"image_id": ids[3], "conversation": "Q: ...", "response": f"<reminder>a</reminder> {refs[ids[3]]} "},
    ]
    out = tmp_path / "M.json"
    assert main(["--predictions", str(write(tmp_path, rows)), "--visdial", world["val"], "--out", str(out),
                 "--dense", world["val_dense"]]) == 0
    m = json.loads(out.read_text())
    assert m["n"] == 4 and m["n_no_final_answer"] == 1 and m["n_without_reminder"] == 1
    assert m["n_missing_predictions"] == 0 and m["n_predictions"] == 4
    assert m["rouge1_f1"] == pytest.approx(0.75)  # three exact answers, one empty (scored 0, not dropped)
    assert m["rougeL_f1"] == pytest.approx(0.75)
    assert m["bertscore_f1"] == pytest.approx(0.75, abs=0.01)
    assert m["bertscore_model"] == "all-MiniLM-L6-v2" and m["bertscore_layers"] == 6
    assert 0 <= m["sacrebleu"] <= 100 and 0 <= m["bleu4_nltk"] <= 100  # both BLEUs, both 0-100
    assert "bleu" not in m and "ranking" not in m  # no metric under an ambiguous name
    r = m["answer_similarity_ranking"]
    assert r["r@1"] >= 0.75 and r["r@10"] >= r["r@5"] >= r["r@1"]  # the three exact answers rank first
    assert "MiniLM similarity to the generated answer" in r["method"] and "not model likelihood" in r["method"]


def test_all_empty_scores_zero(world, refs, tmp_path):
    rows = [{"image_id": i, "conversation": "", "response": ""} for i in refs]
    m = evaluate_predictions(load_predictions(write(tmp_path, rows)), world["val"], ranking="none")
    assert m["rouge1_f1"] == 0 and m["sacrebleu"] == 0 and m["bleu4_nltk"] == 0 and m["bertscore_f1"] == 0
    assert m["n_no_final_answer"] == 4
    assert "answer_similarity_ranking" not in m


def test_empty_answers_rank_their_ground_truth_last(world, refs, tmp_path):
    """No final answer scores zero in ranking too: the empty string's embedding must not pick short options."""
    rows = [{"image_id": i, "conversation": "", "response": "<reminder>never closed"} for i in refs]
    m = evaluate_predictions(load_predictions(write(tmp_path, rows)), world["val"], ranking="minilm")
    r = m["answer_similarity_ranking"]
    assert r["r@1"] == r["r@10"] == 0 and r["mean_rank"] == 100 and r["mrr"] == pytest.approx(0.01)


def _dense_every_last_round(world, tmp_path):
    """Dense relevance for every dialogue's last round (the fixture annotates one random round per dialogue):
    1 for the ground truth, 0.5 for a few other options, so a ranking that puts relevant options first scores."""
    split = load_visdial(world["val"])
    rows = []
    for d in split.dialogs:
        last = d["dialog"][-1]
        rel = [0.0] * len(last["answer_options"])
        for k in range(0, len(rel), 7):
            rel[k] = 0.5  # options 0, 7, 14, ...: an empty answer's old tie order put option 0 first
        rel[last["gt_index"]] = 1.0
        rows.append({"image_id": d["image_id"], "round_id": len(d["dialog"]), "gt_relevance": rel})
    p = tmp_path / "dense_last.json"
    p.write_text(json.dumps(rows))
    return p


def test_an_all_empty_run_never_scores_above_a_real_poor_one(world, refs, tmp_path):
    """Empty answers get the minimum of every metric, ranking included: the ground truth ranked last and every
    relevant option below the irrelevant ones (NDCG 0, R@k 0, MRR 1/100). Before, NDCG was above 0 whenever a
    relevant option sat early in the option order, and could beat a real run."""
    dense = _dense_every_last_round(world, tmp_path)
    empty = evaluate_predictions([{"image_id": i, "conversation": "", "response": ""} for i in refs],
                                 world["val"], dense)
    poor = evaluate_predictions([{"image_id": i, "conversation": "", "response": "<reminder>x</reminder> maybe"}
                                 for i in refs], world["val"], dense)
    re_, rp = empty["answer_similarity_ranking"], poor["answer_similarity_ranking"]
    assert re_["ndcg"] == 0 and re_["ndcg_rounds"] == 4 and re_["r@1"] == re_["r@5"] == re_["r@10"] == 0
    assert re_["mrr"] == pytest.approx(1 / 100) and re_["mean_rank"] == 100
    for k in ("r@1", "r@5", "r@10", "mrr", "ndcg"):
        assert re_[k] <= rp[k], k
    assert re_["mean_rank"] >= rp["mean_rank"]  # lower is better
    for k in ("rouge1_f1", "rouge2_f1", "rougeL_f1", "sacrebleu", "bleu4_nltk", "bertscore_p", "bertscore_r",
              "bertscore_f1"):
        assert empty[k] == 0 and empty[k] <= poor[k], k


def test_missing_predictions_score_zero_and_are_counted(world, refs, tmp_path):
    """Every reference dialogue is scored: one without a prediction counts as the empty answer, never dropped."""
    ids = list(refs)
    exact = {i: f"<reminder>x</reminder> {refs[i]}" for i in ids}
    half = [{"image_id": i, "conversation": "", "response": exact[i]} for i in ids[:2]]
    full = [{"image_id": i, "conversation": "", "response": exact[i] if i in ids[:2] else ""} for i in ids]
    dense = _dense_every_last_round(world, tmp_path)
    m = evaluate_predictions(half, world["val"], dense)
    f = evaluate_predictions(full, world["val"], dense)
    assert m["n"] == 4 and m["n_predictions"] == 2 and m["n_missing_predictions"] == 2
    assert m["n_no_final_answer"] == 0 and f["n_no_final_answer"] == 2 and f["n_missing_predictions"] == 0
    assert m["rouge1_f1"] == pytest.approx(0.5) and m["bertscore_f1"] == pytest.approx(0.5, abs=0.01)
    for k in ("rouge1_f1", "rougeL_f1", "sacrebleu", "bleu4_nltk", "bertscore_f1"):
        assert m[k] == pytest.approx(f[k]), k  # missing == empty answer
    assert m["answer_similarity_ranking"] == f["answer_similarity_ranking"]
    assert m["answer_similarity_ranking"]["ndcg_rounds"] == 4  # the missing dialogues' rounds are scored too


@pytest.mark.parametrize("rows, message", [
    ({"image_id": 1}, "must be a JSON list"),
    ([{"image_id": 1000000, "response": "x"}, "oops"], "entry 1: not an object"),
    ([{"image_id": 1000000, "conversation": "Q: x"}], "entry 0 (image_id=1000000): no 'response'"),
    ([{"image_id": "abc", "response": "x"}], "entry 0: image_id 'abc'"),
    ([{"image_id": 1000000, "response": 3}], "response is int"),
    ([{"image_id": 1000000, "response": "a"}, {"image_id": 1000000, "response": "b"}], "duplicate image_id"),
])
def test_bad_prediction_files_name_the_entry(tmp_path, rows, message):
    with pytest.raises(PredictionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_predictions(write(tmp_path, rows))


def test_unknown_image_id_and_cli_error(world, tmp_path, capsys):
    p = write(tmp_path, [{"image_id": 42, "conversation": "", "response": "x"}])
    assert main(["--predictions", str(p), "--visdial", world["val"], "--out", str(tmp_path / "M.json")]) == 2
    assert "absent from" in capsys.readouterr().err and not (tmp_path / "M.json").exists()
    bad = tmp_path / "broken.json"
    bad.write_text("[{")
    assert main(["--predictions", str(bad), "--visdial", world["val"], "--out", str(tmp_path / "M.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_module_runs_as_a_command(world, refs, tmp_path, monkeypatch):
    """`python -m mmemory.evaluate ...` (run in-process through runpy, so no second interpreter start-up)."""
    rows = [{"image_id": i, "conversation": "", "response": f"<reminder>x</reminder>{a}"} for i, a in refs.items()]
    out = tmp_path / "M.json"
    monkeypatch.setattr(sys, "argv", ["mmemory.evaluate", "--predictions", str(write(tmp_path, rows)),
                                      "--visdial", world["val"], "--out", str(out), "--ranking", "none"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("mmemory.evaluate", run_name="__main__", alter_sys=True)
    assert e.value.code == 0
    assert json.loads(out.read_text())["rouge1_f1"] == pytest.approx(1.0)


def test_an_oversized_response_is_cut_with_a_warning_and_counted(tmp_path, caplog):
    from mmemory.reminder.evaluate import MAX_RESPONSE_CHARS

    huge = "<reminder>" + "x " * MAX_RESPONSE_CHARS + "</reminder> no"
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"image_id": 1, "conversation": "", "response": huge}]))
    with caplog.at_level("WARNING"):
        preds = load_predictions(path)
    assert len(preds[0]["response"]) == MAX_RESPONSE_CHARS and preds[0]["cut"]
    assert "cut to the first" in caplog.text and "image_id=1" in caplog.text
