"""Episodes (runs of turns without a long gap) and the two episode terms of the score: `episode` lifts the turns of
the episode whose best turn matches, `diversity` spreads the top k over episodes. Synthetic data only.

    python -m pytest -q tests/test_memory_episodes.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _memory_fixtures import FakeEncoder  # noqa: E402

from mmemory.memory.scoring import check_weights, combine, episodes, group_max, rank_in_group  # noqa: E402
from mmemory.memory.store import MemoryStore  # noqa: E402

HOUR = 3600.0


def test_episodes_split_on_long_gaps_and_on_sessions():
    ts = np.array([0, 30, 60, 5 * HOUR, 5 * HOUR + 30, 100, 200]) + 1e9
    sess = ["a", "a", "a", "a", "a", "b", "b"]
    ep = episodes(sess, ts)
    assert ep[0] == ep[1] == ep[2] and ep[3] == ep[4] and ep[0] != ep[3]
    assert ep[5] == ep[6] and len({ep[0], ep[3], ep[5]}) == 3      # another session is another episode
    # input order does not matter, and a gap of exactly the limit does not split
    perm = np.array([4, 0, 6, 2, 5, 1, 3])
    assert len(set(zip(episodes([sess[i] for i in perm], ts[perm]), ep[perm]))) == 3
    assert len(set(episodes(["a", "a"], np.array([0.0, HOUR])))) == 1
    assert len(set(episodes(["a", "a"], np.array([0.0, HOUR + 1])))) == 2
    assert len(set(episodes(["a", "a"], np.array([0.0, 3 * HOUR]), gap_hours=4))) == 1
    assert episodes([], np.zeros(0)).shape == (0,)


def test_rank_in_group_and_group_max():
    score = np.array([0.5, 2.0, 1.0, 3.0, 0.1])
    groups = np.array([0, 0, 0, 1, 1])
    assert rank_in_group(score, groups).tolist() == [2, 0, 1, 0, 1]
    assert group_max(score, groups).tolist() == [2.0, 2.0, 2.0, 3.0, 3.0]
    assert rank_in_group(np.array([1.0, 1.0]), np.array([0, 0])).tolist() == [0, 1]   # ties: earlier first


def test_diversity_spreads_the_top_k_over_episodes():
    # episode 0 holds the four best turns; episode 1 the fifth and sixth
    raw = {"relevance": np.array([0.9, 0.85, 0.8, 0.75, 0.7, 0.65])}
    groups = np.array([0, 0, 0, 0, 1, 1])
    plain, _ = combine(raw, {"relevance": 1.0}, None, groups)
    assert set(np.argsort(-plain)[:3]) == {0, 1, 2}
    spread, _ = combine(raw, {"relevance": 1.0, "diversity": 5.0}, None, groups)
    top2 = np.argsort(-spread)[:2]
    assert set(groups[top2]) == {0, 1}               # a large weight: one turn per episode first
    assert np.argsort(-spread)[0] == 0               # the best turn stays first
    # without episode numbers the context terms do nothing
    assert np.array_equal(combine(raw, {"relevance": 1.0, "diversity": 5.0})[0], plain)


def test_episode_term_lifts_the_turns_of_the_best_episode():
    # turn 2 is the best match; turn 1 shares its episode, turn 0 (slightly better than turn 1) does not
    raw = {"relevance": np.array([0.50, 0.49, 0.9])}
    groups = np.array([0, 1, 1])
    plain, _ = combine(raw, {"relevance": 1.0}, None, groups)
    assert plain[0] > plain[1]
    lifted, _ = combine(raw, {"relevance": 1.0, "episode": 0.5}, None, groups)
    assert lifted[1] > lifted[0] and np.argmax(lifted) == 2


def test_context_weights_alone_are_refused():
    for w in ({"episode": 1.0}, {"diversity": 1.0}, {"neighbours": 1.0, "episode": 1.0}):
        with pytest.raises(ValueError, match="all zero"):
            check_weights(w)
    assert check_weights({"relevance": 1, "episode": 0.25, "diversity": 0.1})["episode"] == 0.25


def test_store_search_with_diversity_covers_more_episodes(tmp_path):
    """Three sittings hours apart; the query's words are in many turns of the first. With `diversity` the top 3
    come from three sittings, and `search` and `score_candidates` rank alike."""
    store = MemoryStore(tmp_path / "s", encoder=FakeEncoder(), update_access=False)
    t0 = 1.7e9
    items = []
    for sitting, n_match in enumerate((5, 1, 1)):
        for n in range(6):
            text = "we talked about the garden roses" if n < n_match else f"small talk number {sitting} {n}"
            items.append(dict(text=text, session="c", speaker="Ann", timestamp=t0 + sitting * 6 * HOUR + 30 * n))
    store.add_many(items)
    q = "the garden roses"
    plain = store.search(query_text=q, k=3, weights={"relevance": 1.0}, now=t0 + 30 * HOUR)
    div = store.search(query_text=q, k=3, weights={"relevance": 1.0, "diversity": 2.0}, now=t0 + 30 * HOUR)
    day = {m.id: i // 6 for i, m in enumerate(store.memories("c"))}
    assert len({day[h.memory.id] for h in plain}) == 1
    assert len({day[h.memory.id] for h in div}) == 3
    scored = store.score_candidates(q, weights={"relevance": 1.0, "diversity": 2.0}, now=t0 + 30 * HOUR)
    assert scored.take(scored.order()).ids[:3].tolist() == [h.memory.id for h in div]
    assert store.accessed(div, 3, {"relevance": 1.0, "diversity": 2.0}) == \
        store.accessed_ids(scored.take(scored.order()), 3, {"relevance": 1.0, "diversity": 2.0})
    store.close()
