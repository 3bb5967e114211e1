"""Memory evaluation: chained sessions, the replay, the metrics, the CLI, and the leak-free <reminder> context.

    pytest tests/test_memory_eval.py -q
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder, toy_split  # noqa: E402

from mmemory.memory import MemoryInputError  # noqa: E402
from mmemory.memory.context import build_reminder_context, leaks, round_memory_text  # noqa: E402
from mmemory.memory.evaluate import evaluate, load_sessions, summarise  # noqa: E402
from mmemory.memory.scoring import MemoryConfig  # noqa: E402
from mmemory.memory.sessions import build_sessions, objects_in  # noqa: E402


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return toy_split(tmp_path_factory.mktemp("memtoy"), n_val=24)[0]


@pytest.fixture(scope="module")
def sessions(split, tmp_path_factory):
    turns, queries = build_sessions(split, dialogs_per_session=8, seed=0)
    root = tmp_path_factory.mktemp("sessions")
    for name, rows in (("turns", turns), ("queries", queries)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "turns.jsonl", root / "queries.jsonl"


def test_sessions_have_valid_back_references(split, sessions):
    turns, queries = load_sessions(*sessions)  # also validates: evidence is an earlier turn of the same session
    by_id = {t["turn_id"]: t for t in turns}
    assert len({t["session_id"] for t in turns}) == 3 and len(turns) == 24 * 11
    assert {q["type"] for q in queries} == {"picture", "fact", "recent"}
    for q in queries:
        if q["type"] == "picture":
            assert by_id[q["evidence"][0]].get("image") and by_id[q["evidence"][0]]["caption"]
        if q["type"] == "fact":
            assert q["question"] not in by_id[q["evidence"][0]]["text"]  # paraphrased, not copied
        if q["type"] == "recent":
            obj = q["question"].split("about the ")[1].rstrip("?")
            ev_dialog = q["evidence"][0].rsplit("-", 1)[0]
            shown = [t for t in turns if t["session_id"] == q["session_id"] and t.get("caption")
                     and obj in objects_in(t["caption"]) and t["_ts"] < q["_ts"]]
            assert len(shown) >= 2 and shown[-1]["turn_id"].rsplit("-", 1)[0] == ev_dialog  # the latest showing


def test_load_sessions_errors_name_the_row(tmp_path, sessions):
    turns_path, queries_path = sessions
    bad = tmp_path / "q.jsonl"
    q = json.loads(queries_path.read_text().splitlines()[0])
    bad.write_text(json.dumps({**q, "evidence": ["no-such-turn"]}) + "\n")
    with pytest.raises(MemoryInputError, match=r"query 1 .* cites turn 'no-such-turn'"):
        load_sessions(turns_path, bad)
    late = json.loads(turns_path.read_text().splitlines()[-1])
    bad.write_text(json.dumps({**q, "evidence": [late["turn_id"]]}) + "\n")
    with pytest.raises(MemoryInputError, match="not a turn of its session"):  # another session's turn
        load_sessions(turns_path, bad)
    t = tmp_path / "t.jsonl"
    t.write_text(json.dumps({"session_id": "s", "turn_id": "a", "timestamp": "2024-01-01T00:00:00Z",
                             "speaker": "user", "text": "look", "image": str(tmp_path / "gone.png")}) + "\n")
    with pytest.raises(FileNotFoundError, match="gone.png does not exist"):
        load_sessions(t, bad)


def test_summarise_recall_and_mrr():
    per_query = [{"ranks": [1, 7]}, {"ranks": [None]}, {"ranks": [3, 25]}]
    s = summarise(per_query, ks=(1, 5, 10, 20))
    assert s["recall@1"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert s["recall@5"] == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert s["recall@10"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert s["mrr"] == pytest.approx((1 + 0 + 1 / 3) / 3) and s["queries"] == 3


def test_evaluate_ablation_recency_helps_recent_queries(sessions, tmp_path):
    turns, queries = load_sessions(*sessions)
    methods = MemoryConfig().methods  # config memory.methods
    res = evaluate(turns, queries, FakeEncoder(), methods, tmp_path / "eval")
    assert set(res["methods"]) == set(methods)
    for s in res["methods"].values():
        assert s["queries"] == len(queries) and 0 <= s["recall@1"] <= s["recall@5"] <= s["recall@20"] <= 1
    by = res["by_type"]
    # designed into the sessions: relevance alone cannot tell which mention is the latest; recency can
    assert by["+recency"]["recent"]["mrr"] > by["relevance"]["recent"]["mrr"]
    # a picture query is answered by the image turn's caption: dense relevance finds it
    assert by["relevance"]["picture"]["recall@5"] >= 0.8
    assert not (tmp_path / "eval").exists() or not any((tmp_path / "eval").iterdir())  # scratch stores removed


def test_cli_evaluate_writes_metrics(sessions, tmp_path, monkeypatch):
    from mmemory.memory import __main__ as cli

    monkeypatch.setattr(cli, "_encoder", lambda args: FakeEncoder())
    out = tmp_path / "m.json"
    assert cli.main(["evaluate", "--turns", str(sessions[0]), "--queries", str(sessions[1]), "--out", str(out),
                     "--methods", "rel:relevance=1;bm25:lexical=1", "--workdir", str(tmp_path / "w")]) == 0
    m = json.loads(out.read_text())
    rows = next(iter(m["tables"].values()))
    assert [r["method"] for r in rows] == ["rel", "bm25"] and all(0 <= r["mrr"] <= 1 for r in rows)


def test_reminder_context_never_holds_the_last_round(split, tmp_path):
    context, stats = build_reminder_context(split, FakeEncoder(), tmp_path / "ctx", k=5, dialogs_per_session=8,
                                            weights={"relevance": 1, "neighbours": 0.5, "recency": 2,
                                                     "saliency": 2})
    assert set(context) == {str(d["image_id"]) for d in split.dialogs}
    assert all(len(v) == 5 for v in context.values()) and stats["leaks"] == 0
    assert leaks(split, context) == []
    for d in split.dialogs:
        last = len(d["dialog"])
        target = round_memory_text(split.question(d["dialog"][-1]), split.answer(d["dialog"][-1]))
        for m in context[str(d["image_id"])]:
            assert m["source"] != f"{d['image_id']}:{last}"
            assert not (m["source"].startswith(f"{d['image_id']}:") and target in m["text"])
    # useful: most contexts carry this dialogue's own picture (its caption answers the question)
    # (0.42 here since priors keep their own scale instead of min-max; it was >= 0.5 with min-max recency)
    assert stats["with_own_picture"] >= 0.4
    # the check can fail: inject the last round into one context
    d = split.dialogs[0]
    leaky = dict(context)
    leaky[str(d["image_id"])] = context[str(d["image_id"])] + [{
        "text": round_memory_text(split.question(d["dialog"][-1]), split.answer(d["dialog"][-1])),
        "image": None, "score": 0.0, "source": f"{d['image_id']}:{len(d['dialog'])}"}]
    assert leaks(split, leaky) == [str(d["image_id"])]


def test_leak_check_allows_a_last_round_that_repeats_an_earlier_one(split):
    """The toy generator can ask the same question twice; the window then shows that text anyway."""
    import copy

    from mmemory.visdial import VisDialSplit

    d = copy.deepcopy(split.dialogs[0])
    d["dialog"][-1] = dict(d["dialog"][2])
    rep = VisDialSplit(path="x", version="1.0", split="val", questions=split.questions, answers=split.answers,
                       dialogs=[d])
    text = round_memory_text(rep.question(d["dialog"][2]), rep.answer(d["dialog"][2]))
    iid, n = d["image_id"], len(d["dialog"])
    assert leaks(rep, {str(iid): [{"text": text, "image": None, "score": 1.0, "source": f"{iid}:3"}]}) == []
    assert leaks(rep, {str(iid): [{"text": text, "image": None, "score": 1.0, "source": f"{iid}:{n}"}]}) == [str(iid)]
