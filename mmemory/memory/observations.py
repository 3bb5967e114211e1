"""Optional observation extraction by a local LLM (off by default): LoCoMo's observations, mem0's facts.

    extractor = OllamaObservationExtractor(ObservationConfig(enabled=True, model="gemma3:27b"))
    obs = extractor(window)        # window: turns of one session (dicts with turn_id, speaker, text, caption?)
    # -> [Observation(speaker="Caroline", text="Caroline went to an LGBTQ support group on 7 May 2023.",
    #                  sources=("D1:3",))]

A window of consecutive turns of one session is sent to a model behind an Ollama server (the official `ollama`
client, as the reminder teacher uses it) with the prompts in `resources/prompts/memory_observations_*.txt`; the
reply is JSON. Each observation becomes an extra memory of that session, dated at the window's last turn (a query
never sees an observation of turns after it), and keyed to the turns it cites: in `memory evaluate` a retrieved
observation retrieves its source turns, so evidence recall still counts turns. Cited ids that are not turns of the
window are dropped and counted; an observation citing none is dropped and counted; a window whose reply fails
after the retries is counted and contributes nothing (its turns are still remembered). Never run by default or in
CI (tests use a fake local server).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmemory.config import StrictConfig

logger = logging.getLogger(__name__)

PROMPT_DIR = Path(__file__).resolve().parents[2] / "resources" / "prompts"


@dataclass
class ObservationConfig(StrictConfig):
    """config.yaml `memory.observations` (every default here is the value there)."""

    SECTION = "memory.observations"
    enabled: bool = False            # extract observations at all (needs an Ollama server)
    model: str = "gemma3:27b"        # Ollama model tag (the reminder teacher's)
    host: str = "http://127.0.0.1:11434"   # Ollama server
    timeout_s: float = 120.0         # per request
    window: int = 12                 # consecutive turns of one session per request
    max_attempts: int = 3            # tries per window (server errors, timeouts, unparseable replies)
    temperature: float = 0.0         # sampling temperature (0: deterministic extraction)
    system_prompt: str = "resources/prompts/memory_observations_system.txt"
    user_prompt: str = "resources/prompts/memory_observations_user.txt"


@dataclass(frozen=True)
class Observation:
    speaker: str
    text: str
    sources: tuple[str, ...]         # turn ids of the window the observation cites


class ObservationError(RuntimeError):
    """The extraction failed for good (no server, no model, or every attempt unusable); the message says why."""


def _prompt(path: str) -> str:
    p = Path(path)
    if not p.is_absolute() and not p.is_file():
        p = PROMPT_DIR.parents[1] / path
    if not p.is_file():
        raise FileNotFoundError(f"observation prompt {path} does not exist; set memory.observations.*_prompt to a "
                                "file (the shipped ones are resources/prompts/memory_observations_*.txt)")
    return p.read_text(encoding="utf-8")


def turn_line(t: dict) -> str:
    """One turn as the model reads it: `[D1:3] Caroline: text [shares a photo: caption]`."""
    caption = (t.get("caption") or "").strip()
    return f"[{t['turn_id']}] {t['speaker']}: {str(t['text']).strip()}" + (
        f" [shares a photo: {caption}]" if caption else "")


def parse_observations(reply: str, window_ids: list[str]) -> tuple[list[Observation], dict[str, int]]:
    """The observations of a JSON reply, with citations checked against the window; (observations, counts).
    A reply that is not the asked-for JSON raises ValueError (the caller retries)."""
    data = json.loads(reply)
    items = data.get("observations") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"reply has no 'observations' list: {reply[:120]!r}")
    allowed = set(window_ids)
    out, counts = [], {"cited_unknown_turn": 0, "dropped_no_source": 0, "dropped_malformed": 0}
    for it in items:
        if not isinstance(it, dict) or not str(it.get("text") or "").strip():
            counts["dropped_malformed"] += 1
            continue
        cited = [str(x) for x in (it.get("turns") or []) if not isinstance(x, (dict, list))]
        known = tuple(dict.fromkeys(x for x in cited if x in allowed))
        counts["cited_unknown_turn"] += len(cited) - len([x for x in cited if x in allowed])
        if not known:
            counts["dropped_no_source"] += 1
            continue
        out.append(Observation(str(it.get("speaker") or "").strip() or "someone", " ".join(str(it["text"]).split()),
                               known))
    return out, counts


class OllamaObservationExtractor:
    """Observations of a window of turns from a model behind an Ollama server (`ollama.Client.chat`, JSON format)."""

    def __init__(self, cfg: ObservationConfig, client: Any = None, sleep=time.sleep):
        self.cfg, self.sleep = cfg, sleep
        self.system, self.user = _prompt(cfg.system_prompt), _prompt(cfg.user_prompt)
        if client is None:
            try:
                import ollama
            except ImportError as e:
                raise ObservationError("observation extraction needs `pip install ollama==0.6.3`") from e
            client = ollama.Client(host=cfg.host, timeout=cfg.timeout_s)
        self.client = client
        self.counts = {"windows": 0, "windows_failed": 0, "observations": 0, "cited_unknown_turn": 0,
                       "dropped_no_source": 0, "dropped_malformed": 0}

    def messages(self, window: list[dict]) -> list[dict]:
        user = self.user.format(session_id=window[0]["session_id"], first_turn=window[0]["turn_id"],
                                last_turn=window[-1]["turn_id"], turns="\n".join(turn_line(t) for t in window))
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def _chat(self, messages: list[dict]) -> str:
        resp = self.client.chat(model=self.cfg.model, messages=messages, stream=False, format="json",
                                options={"temperature": self.cfg.temperature})
        content = resp["message"]["content"]
        if not isinstance(content, str):
            raise ValueError("reply content is not text")
        return content

    def __call__(self, window: list[dict]) -> list[Observation]:
        """The window's observations; [] (counted in `counts['windows_failed']`) when every attempt failed.
        A missing model or an unreachable server is an ObservationError: nothing would work after it."""
        import httpx

        self.counts["windows"] += 1
        ids = [str(t["turn_id"]) for t in window]
        what = f"session {window[0]['session_id']!r} turns {ids[0]}..{ids[-1]}"
        last = ""
        for attempt in range(1, self.cfg.max_attempts + 1):
            try:
                obs, counts = parse_observations(self._chat(self.messages(window)), ids)
            except Exception as e:  # noqa: BLE001 -- sorted below: permanent errors end the run, the rest retry
                code = getattr(e, "status_code", None)
                if code == 404:
                    raise ObservationError(f"ollama at {self.cfg.host}: model {self.cfg.model!r} not found; run "
                                           f"`ollama pull {self.cfg.model}` or set memory.observations.enabled: "
                                           "false") from e
                if isinstance(e, (ConnectionError, httpx.ConnectError)):
                    raise ObservationError(f"cannot reach ollama at {self.cfg.host} ({type(e).__name__}); start "
                                           "`ollama serve` or set memory.observations.enabled: false") from e
                last = f"{type(e).__name__}: {str(e)[:160]}"
                logger.warning("observations for %s: attempt %d/%d failed (%s)", what, attempt,
                               self.cfg.max_attempts, last)
                if attempt < self.cfg.max_attempts:
                    self.sleep(min(2.0 ** (attempt - 1), 30.0))
                continue
            for k, v in counts.items():
                self.counts[k] += v
            self.counts["observations"] += len(obs)
            return obs
        self.counts["windows_failed"] += 1
        logger.warning("observations for %s: no usable reply after %d attempts (%s); counted, turns still "
                       "remembered", what, self.cfg.max_attempts, last)
        return []


def windows(turns: list[dict], size: int) -> list[list[dict]]:
    """Consecutive windows of at most `size` turns per session, in time order (turns as `load_sessions` gives them)."""
    by_session: dict[str, list[dict]] = {}
    for t in sorted(turns, key=lambda t: t["_ts"]):
        by_session.setdefault(str(t["session_id"]), []).append(t)
    return [ts[i:i + size] for ts in by_session.values() for i in range(0, len(ts), size)]


def config_from_file(path: str | Path) -> ObservationConfig:
    """`memory.observations` of a config YAML (e.g. config.yaml) as a strict ObservationConfig."""
    import yaml

    cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return ObservationConfig.from_dict((cfg.get("memory") or {}).get("observations") or {})

