"""Parse `<reminder>...</reminder>` responses: strict validation of teacher data and the evaluation's final answer.

Final answer (the project's contract, used by `mmemory.evaluate`): the text after the last `</reminder>`, with any
remaining tags stripped and whitespace folded. A response with an opening `<reminder>` that is never closed (the
generation stopped inside its reflection) has no final answer and scores as empty. A response without any
reminder tag (e.g. the `base` variant, which is never asked for one) is its own final answer.
"""
from __future__ import annotations

import re

OPEN, CLOSE = "<reminder>", "</reminder>"
_OPEN_TAG = re.compile(r"<\s*reminder\s*>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"<\s*/\s*reminder\s*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<\s*/?\s*[a-zA-Z_][\w-]*\s*>")  # chat/control tags such as <end_of_turn>
_WS = re.compile(r"\s+")


def fold(text: str) -> str:
    """Strip tags and fold whitespace to single spaces."""
    return _WS.sub(" ", _ANY_TAG.sub(" ", text)).strip()


def final_answer(response: str) -> tuple[str, str]:
    """(final answer, status). status: "ok"; "no_reminder" (no tag at all: the whole response is the answer);
    "no_final_answer" (unclosed reminder, or nothing after the last `</reminder>`): the answer is ""."""
    if not isinstance(response, str):
        raise TypeError(f"response must be a string, got {type(response).__name__}")
    close = list(_CLOSE_TAG.finditer(response))
    if close:
        answer = fold(response[close[-1].end():])
        return (answer, "ok") if answer else ("", "no_final_answer")
    if _OPEN_TAG.search(response):  # an opening tag that was never closed
        return "", "no_final_answer"
    answer = fold(response)
    return (answer, "no_reminder") if answer else ("", "no_final_answer")


def validate_response(response: str) -> str | None:
    """Why a teacher response is unusable as training data, or None when it is valid: exactly one
    `<reminder>...</reminder>` at the start, a non-empty reflection, then a non-empty final answer."""
    if not isinstance(response, str) or not response.strip():
        return "empty response"
    text = response.strip()
    n_open, n_close = text.count(OPEN), text.count(CLOSE)
    if n_open != 1 or n_close != 1:
        return f"expected exactly one {OPEN}...{CLOSE}, found {n_open} opening and {n_close} closing tags"
    if not text.startswith(OPEN):
        return f"text before {OPEN}: {text[: text.index(OPEN)][:60]!r}"
    start, end = text.index(OPEN) + len(OPEN), text.index(CLOSE)
    if end < start:
        return f"{CLOSE} comes before {OPEN}"
    if not fold(text[start:end]):
        return "empty reminder"
    if not fold(text[end + len(CLOSE):]):
        return f"no final answer after {CLOSE}"
    return None
