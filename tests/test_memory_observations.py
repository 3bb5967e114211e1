"""Optional observation extraction (memory.observations) against a fake local server that speaks Ollama's
/api/chat protocol: the request, the reply's checks, failures, and observations as extra memories in `evaluate`
that retrieve the turns they cite. Never a real model.

    python -m pytest -q tests/test_memory_observations.py
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _fake_http import FakeServer, JsonHandler  # noqa: E402
from _memory_fixtures import FakeEncoder  # noqa: E402
from test_memory_realdata import data, write  # noqa: E402

from mmemory.memory import evaluate as ev  # noqa: E402
from mmemory.memory.observations import (ObservationConfig, ObservationError, OllamaObservationExtractor,  # noqa: E402
                                         config_from_file, parse_observations)

LINE = re.compile(r"^\[(?P<id>[^\]]+)\] (?P<speaker>[^:]+): (?P<text>.*)$")


def observe(user: str) -> str:
    """The fake model: one observation per turn line, citing it, plus one citing a turn that is not there."""
    obs = [{"speaker": m["speaker"], "text": f"{m['speaker']} has a story about {m['text'].split('my ')[-1]}",
            "turns": [m["id"]]} for m in map(LINE.match, user.splitlines()) if m]
    obs.append({"speaker": "Ann", "text": "made up", "turns": ["D99:1"]})
    return json.dumps({"observations": obs})


class _ChatHandler(JsonHandler):
    def do_POST(self):
        fake, body = self.fake, self.read_json()
        fake.requests.append((self.path, body))
        action = fake.actions.pop(0) if len(fake.actions) > 1 else fake.actions[0]
        if action in ("500", "404"):
            return self.send_json(int(action), b'{"error":"no"}')
        content = "not json at all" if action == "garbage" else observe(body["messages"][-1]["content"])
        self.send_json(200, json.dumps({"model": body["model"], "created_at": "2025-01-01T00:00:00Z",
                                        "message": {"role": "assistant", "content": content}, "done": True,
                                        "done_reason": "stop"}).encode())


class FakeOllama(FakeServer):
    """/api/chat: each request pops the next action ('ok' = observe the window; '500'; '404'; 'garbage')."""

    def __init__(self, actions):
        self.actions, self.requests = list(actions), []
        self.start(_ChatHandler)


@pytest.fixture
def server():
    made = []

    def make(actions):
        made.append(FakeOllama(actions))
        return made[-1]

    yield make
    for s in made:
        s.close()


def extractor(host, **kw):
    return OllamaObservationExtractor(ObservationConfig(enabled=True, host=host, timeout_s=5, window=6, **kw),
                                      sleep=lambda s: None)


def test_request_and_checked_citations(server, tmp_path):
    srv = server(["ok"])
    t, _ = ev.load_sessions(*write(tmp_path, *data()))
    window = [x for x in t if x["session_id"] == "c1"][:6]
    ex = extractor(srv.host)
    obs = ex(window)
    path, body = srv.requests[0]
    assert path == "/api/chat" and body["format"] == "json" and body["stream"] is False
    assert body["model"] == "gemma3:27b" and body["options"]["temperature"] == 0
    system, user = body["messages"]
    assert "JSON" in system["content"] and "[D1:1] Ann: I went on about my" in user["content"]
    assert [o.sources for o in obs] == [(x["turn_id"],) for x in window]   # the made-up citation is dropped
    assert ex.counts["cited_unknown_turn"] == 1 and ex.counts["dropped_no_source"] == 1


def test_parse_refuses_what_is_not_the_asked_json():
    with pytest.raises(ValueError):
        parse_observations("sure! here you go", ["D1:1"])
    with pytest.raises(ValueError, match="observations"):
        parse_observations('{"facts": []}', ["D1:1"])
    obs, counts = parse_observations('{"observations": [{"text": "x", "turns": ["D1:1", "D1:1", "D2:2"]}, 3]}',
                                     ["D1:1"])
    assert obs[0].sources == ("D1:1",) and counts["cited_unknown_turn"] == 1 and counts["dropped_malformed"] == 1


def test_failures_retry_then_count_or_stop(server, tmp_path):
    t, _ = ev.load_sessions(*write(tmp_path, *data()))
    window = t[:3]
    ex = extractor(server(["500", "garbage", "ok"]).host)
    assert len(ex(window)) == 3 and ex.counts["windows_failed"] == 0    # third attempt worked
    ex = extractor(server(["500"]).host)
    assert ex(window) == [] and ex.counts["windows_failed"] == 1        # counted, never silently empty
    with pytest.raises(ObservationError, match="ollama pull gemma3:27b"):
        extractor(server(["404"]).host)(window)
    with pytest.raises(ObservationError, match="cannot reach"):
        extractor("http://127.0.0.1:9")(window)


def test_observations_become_memories_that_retrieve_their_turns(server, tmp_path):
    t, q = ev.load_sessions(*write(tmp_path, *data()))
    plain = ev.evaluate(t, q, FakeEncoder(), workdir=tmp_path / "w0")
    assert "observations" not in plain                                   # off by default
    res = ev.evaluate(t, q, FakeEncoder(), workdir=tmp_path / "w1", observations=extractor(server(["ok"]).host))
    assert res["observations"]["memories"] == len(t) and res["observations"]["windows"] == 12
    assert all(len(r["ranks"]) == 1 for r in res["per_query"]["default"])   # still turns' recall
    # the simulated methods equal a real replay with the observations, and the packed ranks equal it too
    extra = ev.observation_items(t, extractor(server(["ok"]).host))
    recorded = ev.record(t, q, FakeEncoder(), tmp_path / "rec", observations=extra)
    assert all("credits" in r for r in recorded if r.get("raw"))
    assert any(top.startswith("obs:") for r in recorded for top in r["top"])   # observations are retrieved
    w = {"relevance": 1.0, "lexical": 1.0, "neighbours": 0.5, "frequency": 0.25}
    real = ev.replay(t, q, FakeEncoder(), w, tmp_path / "real", observations=extra)
    sim = ev.simulate(recorded, w)
    key = lambda rows: [sorted(r["ranks"], key=lambda x: (x is None, x)) for r in rows]  # noqa: E731
    assert key(real) == key(sim)
    packed = ev.Packed(recorded)
    want = np.array([sum(r is not None and r <= 5 for r in row["ranks"]) / len(row["ranks"])
                     for row in ev.simulate(recorded, {c: v for c, v in w.items() if c != "frequency"})])
    assert np.array_equal(packed.metric({c: v for c, v in w.items() if c != "frequency"}, "recall@5"), want)


def test_config_section_is_strict_and_off_by_default(tmp_path):
    import yaml

    root = Path(__file__).resolve().parents[1]
    shipped = yaml.safe_load((root / "config.yaml").read_text())["memory"]["observations"]
    assert ObservationConfig.from_dict(shipped) == ObservationConfig() and not ObservationConfig().enabled
    (tmp_path / "c.yaml").write_text("memory:\n  observations:\n    enabled: true\n    modle: x\n")
    with pytest.raises(ValueError, match="modle"):
        config_from_file(tmp_path / "c.yaml")


def test_the_workflow_step_passes_memory_observations_to_the_extractor(server, tmp_path, monkeypatch):
    """rules/memory.smk gives memory_evaluate the memory.observations section; `stage.evaluate_step` turns it into
    an extractor that reads every split (train for the tuning, val, test), and off (the default) asks nothing."""
    from mmemory.memory import stage

    monkeypatch.setattr(stage, "load_memory_encoder", lambda encoder: FakeEncoder())
    paths = {}
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        paths[split] = write(tmp_path / split, *data())
    srv = server(["ok"])
    memory = {"methods": {"relevance": {"relevance": 1.0}}, "recency_unit": "span"}

    def run(name, observations):
        out = {k: tmp_path / name / f"{k}.{ext}" for k, ext in (("metrics", "json"), ("per_query", "json"),
                                                               ("figure", "png"))}
        return stage.evaluate_step(paths, {}, memory, {"sessions": 3}, {"type": "flat"}, str(tmp_path / name / "w"),
                                   out, observations=observations)

    off = run("off", {"enabled": False, "host": srv.host})
    assert srv.requests == [] and "observations" not in off
    assert "observations" not in run("none", None)
    on = run("on", {"enabled": True, "host": srv.host, "window": 6, "timeout_s": 5})
    turns = len(data()[0])
    assert len(srv.requests) == 3 * 12 and all(p == "/api/chat" for p, _ in srv.requests)   # 12 windows per split
    assert on["observations"]["windows"] == 36 and on["observations"]["test_memories"] == turns
    assert on["observations"]["model"] == "gemma3:27b"
    with pytest.raises(ValueError, match="modle"):
        run("bad", {"enabled": True, "modle": "x"})
