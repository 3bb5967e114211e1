"""Dates for temporal questions (issue 25): relative dates in a memory ("yesterday", "last Saturday", "two weeks ago")
resolved against its own timestamp, the periods a question names, and the `dates` cue of the score. Synthetic data.

    python -m pytest -q tests/test_memory_dates.py
"""
from __future__ import annotations

import sys
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder  # noqa: E402

from mmemory.memory import lexical  # noqa: E402
from mmemory.memory.store import MemoryStore, to_unix  # noqa: E402

MONDAY = to_unix("2023-05-08T13:56:00Z")   # a Monday


def days(periods) -> list[tuple[str, str]]:
    return [(str(date.fromordinal(a)), str(date.fromordinal(b))) for a, b in periods]


def refers_to(text: str, ts: float) -> list[tuple[str, str]]:
    """The periods a memory refers to, less its own day (always the first)."""
    periods = days(lexical.memory_periods(text, ts))
    assert periods[0] == (str(datetime.fromtimestamp(ts, timezone.utc).date()),) * 2
    return periods[1:]


def test_relative_dates_resolve_against_the_memory_time():
    assert refers_to("I went to a pottery class yesterday", MONDAY) == [("2023-05-07", "2023-05-07")]
    assert refers_to("last Saturday we repaired the boat", MONDAY) == [("2023-05-06", "2023-05-06")]
    assert refers_to("we did it last fri", MONDAY) == [("2023-05-05", "2023-05-05")]
    assert refers_to("see you next friday", MONDAY) == [("2023-05-12", "2023-05-12")]
    assert refers_to("we went sailing last weekend", MONDAY) == [("2023-05-06", "2023-05-07")]
    assert refers_to("it was crazy last week", MONDAY) == [("2023-05-01", "2023-05-07")]   # the calendar week before
    assert refers_to("I'm moving next month", MONDAY) == [("2023-06-01", "2023-06-30")]
    assert refers_to("I adopted her two weeks ago", MONDAY) == [("2023-04-21", "2023-04-27")]   # 14 days, +-3
    assert refers_to("I started 3 days ago", MONDAY) == [("2023-05-05", "2023-05-05")]
    assert refers_to("we moved here last year", MONDAY) == [("2022-01-01", "2022-12-31")]
    assert refers_to("the concert is tomorrow", MONDAY) == [("2023-05-09", "2023-05-09")]
    # explicit dates: with a year, and without one (the nearest: a memory may plan ahead)
    assert refers_to("it opened on 7 May 2023", MONDAY) == [("2023-05-07", "2023-05-07")]
    assert refers_to("my birthday is June 3rd", MONDAY) == [("2023-06-03", "2023-06-03")]
    assert refers_to("it was great", MONDAY) == []


def test_question_periods_are_explicit_dates_and_what_they_anchor():
    now = to_unix("2023-10-23T10:00:00Z")
    assert days(lexical.question_periods("What did she buy on 1 February, 2023?", now)) == [("2023-02-01",) * 2]
    assert days(lexical.question_periods("What did he cook on October 13, 2023?", now)) == [("2023-10-13",) * 2]
    assert days(lexical.question_periods("What sport did she take up in December 2023?", now)) == [
        ("2023-12-01", "2023-12-31")]
    # a month without a year is the latest one not after the question
    assert days(lexical.question_periods("When did they go sailing in June?", now)) == [("2023-06-01", "2023-06-30")]
    assert days(lexical.question_periods("When did they go sailing in June?", to_unix("2023-03-01T00:00:00Z"))) == [
        ("2022-06-01", "2022-06-30")]
    # a relative phrase before an explicit date is anchored on that date
    assert days(lexical.question_periods("What did he fix the week before August 3, 2023?", now)) == [
        ("2023-08-03",) * 2, ("2023-07-24", "2023-07-30")]
    assert days(lexical.question_periods("What boat did she buy two weeks before August 11, 2023?", now))[1] == (
        "2023-07-25", "2023-07-31")
    assert lexical.question_periods("When did she go to the pottery class?", now) == []
    assert lexical.names_period(lexical.question_periods("on 7 May 2023?", now),
                                lexical.memory_periods("I went yesterday", MONDAY))
    assert not lexical.names_period(lexical.question_periods("on 5 May 2023?", now),
                                    lexical.memory_periods("I went yesterday", MONDAY))


def _store(tmp_path) -> MemoryStore:
    store = MemoryStore(tmp_path / "m", encoder=FakeEncoder(), update_access=False)
    store.add_many([
        {"text": "we adopted a puppy yesterday", "session": "s", "timestamp": "2023-06-04T10:00:00Z",
         "speaker": "ann"},
        {"text": "we adopted a kitten from the shelter", "session": "s", "timestamp": "2023-05-01T10:00:00Z",
         "speaker": "ann"},
        {"text": "the shelter has a puppy and a kitten", "session": "s", "timestamp": "2023-06-20T10:00:00Z",
         "speaker": "bob"},
    ])
    return store


def test_the_dates_cue_finds_the_memory_that_resolves_to_the_named_day(tmp_path):
    store = _store(tmp_path)
    q, now = "what did ann adopt on 3 June, 2023?", "2023-07-01T00:00:00Z"
    scored = store.score_candidates(q, now=now)
    text = {int(m): store.get(int(m)).text for m in scored.ids}
    dates = {text[int(m)]: v for m, v in zip(scored.ids, scored.raw["dates"])}
    assert dates == {"we adopted a puppy yesterday": 1.0, "we adopted a kitten from the shelter": 0.0,
                     "the shelter has a puppy and a kitten": 0.0}
    hits = store.search(query_text=q, now=now, k=1, weights={"relevance": 1, "dates": 2})
    assert hits[0].memory.text == "we adopted a puppy yesterday" and hits[0].components["dates"] == 1.0
    store.close()


def test_the_dates_switch_at_zero_leaves_the_ranking_unchanged(tmp_path):
    store = _store(tmp_path)
    for q in ("what did ann adopt on 3 June, 2023?", "what did ann adopt?", "what happened in May 2023?"):
        for base in ({"relevance": 1.0}, {"relevance": 1.0, "lexical": 1.0, "speaker": 1.0, "neighbours": 0.5}):
            without = store.search(query_text=q, now="2023-07-01T00:00:00Z", k=3, weights=base)
            at_zero = store.search(query_text=q, now="2023-07-01T00:00:00Z", k=3, weights={**base, "dates": 0.0})
            assert [h.memory.id for h in without] == [h.memory.id for h in at_zero]
            assert np.allclose([h.score for h in without], [h.score for h in at_zero])
    store.close()


def test_the_dates_cue_needs_a_text_query(tmp_path):
    import pytest

    from mmemory.memory.store import MemoryInputError

    store = _store(tmp_path)
    with pytest.raises(MemoryInputError, match="dates"):
        store.search(query_vector=np.ones(FakeEncoder.dim), weights={"relevance": 1, "dates": 1})
    store.close()


def test_the_config_schema_names_every_scoring_component():
    """A weight the code knows (dates among them) is one config.yaml's schema accepts, in every method table."""
    import yaml

    from mmemory.memory.scoring import COMPONENTS

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "rules" / "schemas" / "config.schema.yaml")
                            .read_text())
    found = []

    def walk(node):
        if isinstance(node, dict):
            names = node.get("propertyNames", {}).get("enum") if isinstance(node.get("propertyNames"), dict) else None
            if names and "relevance" in names:
                found.append(names)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert found and all(set(names) == set(COMPONENTS) for names in found)
