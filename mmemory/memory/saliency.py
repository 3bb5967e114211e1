"""Saliency raters for `MemoryStore(saliency_fn=...)`: a 1-10 importance rating of a memory from a teacher LLM.

    rater = OllamaSaliencyRater(model="gemma3:27b", host="http://127.0.0.1:11434")   # the reminder stage's teacher
    store = MemoryStore("agent.mem", encoder=enc, saliency_fn=rater)

The prompt follows Generative Agents' poignancy rating (1: mundane, 10: extremely important). The heuristic default
in `mmemory.memory.store.heuristic_saliency` needs no model.
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

PROMPT = (
    "On the scale of 1 to 10, where 1 is purely mundane (e.g. small talk, a routine yes/no) and 10 is extremely "
    "important for the rest of the conversation (e.g. a new picture the user shared, a fact they will ask about "
    "again), rate the likely importance of remembering the following turn of a conversation.\n"
    "Turn: {text}\n{caption}Answer with one integer from 1 to 10 only.\nRating:"
)
_INT = re.compile(r"\b(10|[1-9])\b")


def parse_rating(reply: str) -> float:
    """The first integer 1..10 in a model's reply; a reply without one is an error (never a silent default)."""
    m = _INT.search(reply or "")
    if not m:
        raise ValueError(f"saliency rater reply has no rating 1-10: {reply[:80]!r}")
    return float(m.group(1))


class OllamaSaliencyRater:
    """Rates memories with a model behind an Ollama server (`ollama.Client.chat`), the image attached when present."""

    def __init__(self, model: str = "gemma3:27b", host: str = "http://127.0.0.1:11434", timeout_s: float = 60.0,
                 client=None):
        if client is None:
            try:
                import ollama
            except ImportError as e:
                raise ImportError("the ollama saliency rater needs `pip install ollama==0.6.3`") from e
            client = ollama.Client(host=host, timeout=timeout_s)
        self.client, self.model, self.host = client, model, host

    def __call__(self, text: str, caption: str | None, image: str | None) -> float:
        msg = {"role": "user", "content": PROMPT.format(text=text or "(an image)",
                                                        caption=f"Image caption: {caption}\n" if caption else "")}
        if image:
            msg["images"] = [base64.b64encode(Path(image).read_bytes()).decode("ascii")]
        try:
            resp = self.client.chat(model=self.model, messages=[msg], stream=False, options={"temperature": 0})
        except Exception as e:  # connection refused, model missing: say where and what to do
            raise RuntimeError(f"saliency rater: ollama at {self.host} with model {self.model!r} failed "
                               f"({type(e).__name__}: {e}); start `ollama serve` and `ollama pull {self.model}`, "
                               "or use the heuristic saliency (saliency_fn=None)") from e
        return parse_rating(resp["message"]["content"])
