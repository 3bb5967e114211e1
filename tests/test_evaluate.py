"""The generation evaluation CLI on seed-format prediction files: final answers, counts, metrics, ranking, errors.

Run: pytest tests/test_evaluate.py
"""
import json
import runpy
import sys

import pytest
from _reminder_fixtures import shared_world

from mmemory.evaluate import PredictionError, evaluate_predictions, load_predictions, main
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
    assert m["n_dialogs_without_prediction"] == 0
    assert m["rouge1_f1"] == pytest.approx(0.75)  # three exact answers, one empty (scored 0, not dropped)
    assert m["rougeL_f1"] == pytest.approx(0.75)
    assert m["bertscore_f1"] == pytest.approx(0.75, abs=0.01)
    assert m["bertscore_model"] == "all-MiniLM-L6-v2" and m["bertscore_layers"] == 6
    assert 0 <= m["bleu"] <= 1  # corpus BLEU-4 of one- to three-word answers is near 0 (as in the seeds)
    r = m["ranking"]
    assert r["r@1"] >= 0.75 and r["r@10"] >= r["r@5"] >= r["r@1"]  # the three exact answers rank first
    assert "MiniLM cosine" in r["method"]


def test_all_empty_scores_zero(world, refs, tmp_path):
    rows = [{"image_id": i, "conversation": "", "response": ""} for i in refs]
    m = evaluate_predictions(load_predictions(write(tmp_path, rows)), world["val"], ranking="none")
    assert m["rouge1_f1"] == 0 and m["bleu"] == 0 and m["bertscore_f1"] == 0 and m["n_no_final_answer"] == 4
    assert "ranking" not in m


def test_empty_answers_rank_their_ground_truth_last(world, refs, tmp_path):
    """No final answer scores zero in ranking too: the empty string's embedding must not pick short options."""
    rows = [{"image_id": i, "conversation": "", "response": "<reminder>never closed"} for i in refs]
    m = evaluate_predictions(load_predictions(write(tmp_path, rows)), world["val"], ranking="minilm")
    r = m["ranking"]
    assert r["r@1"] == r["r@10"] == 0 and r["mean_rank"] == 100 and r["mrr"] == pytest.approx(0.01)


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
