"""reminder_table: the variants' table in the seeds' shape (mean over training seeds), the spread, the differences
(a gain only beyond the spread, with the caption control), the headline and the figure.

Run: pytest tests/test_reminder_table.py
"""
import json

import pytest

from mmemory.reminder.stage import build_table, variants_table


def metrics(r1, n_empty=0, n_missing=0, bert=0.5):
    return {"n": 80, "rouge1_f1": r1, "rouge2_f1": r1 / 2, "rougeL_f1": r1, "sacrebleu": 40 * r1, "bleu4_nltk": 1.0,
            "bertscore_f1": bert, "n_no_final_answer": n_empty, "n_missing_predictions": n_missing,
            "bertscore_model": "all-MiniLM-L6-v2", "bertscore_layers": 6,
            "answer_similarity_ranking": {"mrr": 0.3, "r@1": 0.2, "method": "options ranked by MiniLM similarity"}}


def test_table_rows():
    m = {"base": metrics(0.0), "finetuned": metrics(0.2, 3), "finetuned_memory": metrics(0.25, 1, 2)}
    rows = variants_table(m, {"base": 1, "finetuned": 3, "finetuned_memory": 3})
    assert [r["variant"] for r in rows] == ["base", "finetuned", "finetuned_memory"]
    assert list(rows[0]) == ["variant", "ROUGE-1 F1", "ROUGE-2 F1", "ROUGE-L F1", "sacreBLEU (0-100)",
                             "BERTScore F1", "MRR (answer similarity)", "R@1 (answer similarity)",
                             "no final answer", "missing prediction", "n", "seeds"]
    assert rows[1]["sacreBLEU (0-100)"] == pytest.approx(8.0)  # sacreBLEU on EMR's 0-100 scale, not /100
    assert rows[2]["missing prediction"] == 2 and rows[1]["seeds"] == 3


def _write(tmp_path, name, m):
    path = tmp_path / "test" / f"{name}.json"  # build_table names the split by the metrics file's folder
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(m))
    return str(path)


def _build(tmp_path, runs, finetune=("f0",)):
    (tmp_path / "t.json").write_text(json.dumps({"teacher": "template", "accepted": 3, "reject_reasons": {}}))
    ft = []
    for i, name in enumerate(finetune):
        (tmp_path / f"{name}.json").write_text(json.dumps({"backend": "hf", "steps": 2, "train_loss": 1.0 + i}))
        ft.append(str(tmp_path / f"{name}.json"))
    return build_table(runs, tmp_path / "t.json", ft, tmp_path / "metrics.json", tmp_path / "fig.png")


def test_seeds_are_averaged_and_a_gain_must_beat_the_spread(tmp_path):
    runs = {"base": [_write(tmp_path, "base", metrics(0.0))],
            "finetuned": [_write(tmp_path, f"ft{s}", metrics(r, bert=0.5)) for s, r in enumerate((0.2, 0.3, 0.4))],
            "finetuned_caption": [_write(tmp_path, f"fc{s}", metrics(r, bert=0.6))
                                  for s, r in enumerate((0.5, 0.6, 0.7))],
            "finetuned_memory": [_write(tmp_path, f"fm{s}", metrics(r, bert=0.6))
                                 for s, r in enumerate((0.55, 0.65, 0.75))]}
    out = _build(tmp_path, runs, ("f0", "f1", "f2"))
    main, spread, diffs = out["tables"].values()
    assert "80 test dialogues" in next(iter(out["tables"])) and "mean over 3 training seeds" in next(iter(out["tables"]))
    assert [r["ROUGE-1 F1"] for r in main] == pytest.approx([0.0, 0.3, 0.6, 0.65])
    assert [r["seeds"] for r in main] == [1, 3, 3, 3]
    assert spread[0]["variant"] == "finetuned" and spread[0]["ROUGE-1 F1"] == pytest.approx(0.1)
    by = {(d["comparison"], d["metric"]): d for d in diffs}
    memory = by[("finetuned_memory − finetuned_caption", "ROUGE-1 F1")]
    assert memory["Δ"] == pytest.approx(0.05) and memory["verdict"] == "within the spread"  # 0.05 < sqrt(2) * 0.1
    caption = by[("finetuned_caption − finetuned", "ROUGE-1 F1")]
    assert caption["Δ"] == pytest.approx(0.3) and caption["verdict"] == "gain"
    assert by[("finetuned_memory − finetuned_caption", "BERTScore F1")]["verdict"] == "within the spread"
    assert out["finetune"]["train_loss"] == pytest.approx(2.0) and out["train_seeds"] == 3
    assert out["headline"]["finetuned_memory ROUGE-1"] == pytest.approx(0.65)
    assert (tmp_path / "fig.png").stat().st_size > 1000


def test_one_seed_calls_nothing_a_gain(tmp_path):
    runs = {"base": [_write(tmp_path, "base", metrics(0.0))], "finetuned": [_write(tmp_path, "ft", metrics(0.4))]}
    out = _build(tmp_path, runs)
    assert "one training seed" in next(iter(out["tables"]))
    diffs = out["tables"][next(t for t in out["tables"] if t.startswith("Differences"))]
    assert {d["verdict"] for d in diffs} == {"one seed: spread unknown"}
    assert not any(t.startswith("Seed-to-seed") for t in out["tables"])
    assert json.loads((tmp_path / "metrics.json").read_text())["finetune"]["backend"] == "hf"
    assert "reject_reasons" not in out["teacher"]
    assert "MiniLM similarity" in out["answer_similarity_ranking"]


def test_group_headlines_carry_their_controls_for_the_overview_figure():
    """The overview figure draws each <reminder> headline beside its controls: finetuned_memory on earlier pictures
    beside finetuned, wrong_memory, oracle_memory and the question prior; finetuned beside the prior."""
    from mmemory.reminder.stage import group_headline

    rows = [{"variant": "question prior (no picture, no memory)", "exact match (current picture)": 0.48,
             "exact match (earlier picture)": 0.12},
            {"variant": "finetuned", "exact match (current picture)": 0.53, "exact match (earlier picture)": 0.08},
            {"variant": "finetuned_memory", "exact match (current picture)": 0.52, "exact match (earlier picture)": 0.32},
            {"variant": "wrong_memory", "exact match (current picture)": 0.46, "exact match (earlier picture)": 0.11}]
    headline, controls = group_headline(rows)
    assert headline == {"finetuned_memory EM (earlier picture)": 0.32, "finetuned EM (earlier picture)": 0.08,
                        "finetuned EM (current picture)": 0.53}
    assert controls["finetuned_memory EM (earlier picture)"] == [
        {"control": "finetuned", "value": 0.08}, {"control": "wrong_memory", "value": 0.11},
        {"control": "question prior", "value": 0.12}]  # no oracle_memory row: no tick for it
    assert controls["finetuned EM (current picture)"] == [{"control": "question prior", "value": 0.48}]
