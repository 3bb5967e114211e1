"""The memory stage's functions (what the workflow scripts call): sessions per split, an ablation that chooses its
method on val before it scores test, and the reminder context.

    pytest tests/test_memory_stage.py -q
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder  # noqa: E402
from _toy import prepared_toy  # noqa: E402

from mmemory.memory import stage  # noqa: E402
from mmemory.encoders import CachedEncoder  # noqa: E402

STORE = {"index": {"type": "flat"}, "half_life": 24.0, "recency_unit": "hours"}
METHODS = {"relevance": {"relevance": 1.0}, "+recency": {"relevance": 1.0, "recency": 1.0}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("memstage")
    paths = prepared_toy(root, n_train=16, n_val=8, image_size=32, seed=0)
    for split in ("train", "val", "test"):
        for d in json.loads(paths[split].read_text())["data"]["dialogs"]:
            Path(d["image_path"] + ".txt").write_text(d["caption"])
    sessions = {}
    for split in ("train", "val", "test"):
        turns, queries = root / f"{split}_turns.jsonl", root / f"{split}_queries.jsonl"
        stats = stage.run_sessions(str(paths[split]), turns, queries, dialogs_per_session=4,
                                   hours_between_dialogs=6.0, queries_per_type=1, seed=0,
                                   max_sessions=2 if split == "train" else None)
        assert stats["queries"] > 0
        sessions[split] = (turns, queries)
    return root, paths, sessions


def test_choose_method_takes_the_best_and_the_first_on_a_tie():
    val = {"a": {"recall@5": 0.5}, "b": {"recall@5": 0.7}, "c": {"recall@5": 0.7}}
    assert stage.choose_method(val, "recall@5") == "b"


def test_run_sessions_refuses_a_split_that_gives_no_queries(world, tmp_path):
    _, paths, _ = world
    with pytest.raises(ValueError, match="give no memory queries"):
        stage.run_sessions(str(paths["val"]), tmp_path / "t.jsonl", tmp_path / "q.jsonl", dialogs_per_session=50,
                           hours_between_dialogs=6.0, queries_per_type=1)


def test_ablation_chooses_on_val_before_it_scores_test(world, tmp_path, monkeypatch):
    root, _, sessions = world
    from mmemory.memory import evaluate as ev

    calls = []
    real = ev.evaluate

    def spy(turns, queries, *a, **kw):
        calls.append(queries[0]["session_id"].split("-")[0])
        return real(turns, queries, *a, **kw)

    monkeypatch.setattr(ev, "evaluate", spy)
    out = {"metrics": tmp_path / "m.json", "per_query": tmp_path / "pq.json", "figure": tmp_path / "r.png"}
    m = stage.run_ablation(sessions, CachedEncoder(FakeEncoder()), METHODS, 5, STORE, str(tmp_path / "w"), out)
    assert calls == ["val", "test"]  # the choice is made before any test query is scored
    val_scores = m["chosen_on_val"]
    assert m["chosen_method"] == val_scores["method"] in {*METHODS, "tuned"}
    assert m["tuning"]["split"] == "train"
    table = next(iter(m["tables"].values()))
    assert sum(r["method"].endswith("(chosen on val)") for r in table) == 1
    assert "test" in next(iter(m["tables"]))  # the title names the data
    # the chosen method's headline sits beside relevance alone (its control) in the overview figure
    chosen_head = f"memory chosen-on-val ({m['chosen_method']}) r@5"
    relevance = next(r for r in table if r["method"].startswith("relevance"))["recall@5"]
    assert [c["control"] for c in m["headline_controls"][chosen_head]] == ["relevance alone"]
    assert m["headline_controls"][chosen_head][0]["value"] == pytest.approx(relevance, abs=1e-4)
    assert json.loads(out["metrics"].read_text()) == json.loads(json.dumps(m))
    assert out["figure"].stat().st_size > 1000


def test_reminder_context_for_one_split(world, tmp_path):
    _, paths, _ = world
    ctx, metrics = tmp_path / "ctx.json", tmp_path / "m.json"
    m = stage.run_reminder_context(str(paths["test"]), CachedEncoder(FakeEncoder()), 3, 4, {"relevance": 1.0}, STORE,
                                   str(tmp_path / "store"), ctx, metrics, encoder_name="fake")
    context = json.loads(ctx.read_text())
    test_ids = {str(d["image_id"]) for d in json.loads(paths["test"].read_text())["data"]["dialogs"]}
    assert set(context) == test_ids and all(len(v) <= 3 for v in context.values())
    assert m["encoder"] == "fake" and "test" in next(iter(m["tables"]))
