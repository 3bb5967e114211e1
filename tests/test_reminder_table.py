"""reminder_table: the variants' table in the seeds' shape with the memory delta row, headline and figure.

Run: pytest tests/test_reminder_table.py
"""
import json

import pytest

from mmemory.reminder.stage import build_table, variants_table


def metrics(r1, n_empty=0, n_missing=0):
    return {"n": 80, "rouge1_f1": r1, "rouge2_f1": r1 / 2, "rougeL_f1": r1, "sacrebleu": 40 * r1, "bleu4_nltk": 1.0,
            "bertscore_f1": 0.5, "n_no_final_answer": n_empty, "n_missing_predictions": n_missing,
            "bertscore_model": "all-MiniLM-L6-v2", "bertscore_layers": 6,
            "answer_similarity_ranking": {"mrr": 0.3, "r@1": 0.2, "method": "options ranked by MiniLM similarity"}}


def test_table_rows_and_memory_delta(tmp_path):
    m = {"base": metrics(0.0), "finetuned": metrics(0.2, 3), "finetuned_memory": metrics(0.25, 1, 2)}
    rows = variants_table(m)
    assert [r["variant"] for r in rows] == ["base", "finetuned", "finetuned_memory", "Δ finetuned_memory − finetuned"]
    assert list(rows[0]) == ["variant", "ROUGE-1 F1", "ROUGE-2 F1", "ROUGE-L F1", "sacreBLEU (0-100)",
                             "BERTScore F1", "MRR (answer similarity)", "R@1 (answer similarity)",
                             "no final answer", "missing prediction", "n"]
    assert rows[1]["sacreBLEU (0-100)"] == pytest.approx(8.0)  # sacreBLEU on EMR's 0-100 scale, not /100
    assert rows[-1]["ROUGE-1 F1"] == pytest.approx(0.05) and rows[-1]["no final answer"] == -2
    assert rows[2]["missing prediction"] == 2
    paths = {}
    for v, mm in m.items():
        paths[v] = tmp_path / f"{v}.json"
        paths[v].write_text(json.dumps(mm))
    (tmp_path / "t.json").write_text(json.dumps({"teacher": "template", "accepted": 3, "reject_reasons": {}}))
    (tmp_path / "f.json").write_text(json.dumps({"backend": "hf", "steps": 2, "last_loss": 1.0}))
    out = build_table({v: str(p) for v, p in paths.items()}, tmp_path / "t.json", tmp_path / "f.json",
                      tmp_path / "metrics.json", tmp_path / "fig.png")
    assert out["headline"] == {"base ROUGE-1": 0.0, "finetuned ROUGE-1": 0.2, "finetuned_memory ROUGE-1": 0.25}
    assert (tmp_path / "fig.png").stat().st_size > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["finetune"]["backend"] == "hf"
    assert "reject_reasons" not in out["teacher"]
    assert "MiniLM similarity" in out["answer_similarity_ranking"] and "ranking_method" not in out

