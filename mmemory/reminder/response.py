"""Parse `<reminder>...</reminder>` responses: strict validation of teacher data and the evaluation's final answer.

Final answer (the project's contract, used by `mmemory.reminder.evaluate`): the text after the last `</reminder>`, with any
remaining tags stripped and whitespace folded. A response with an opening `<reminder>` that is never closed (the
generation stopped inside its reflection) has no final answer and scores as empty. A response without any
reminder tag (e.g. the `base` variant, which is never asked for one) is its own final answer.

Stripping a tag means whole tags (`<end_of_turn>`, `<|eot_id|>`) and broken fragments of them: a tag cut by the
generation limit (`... yes </remind`, `<end_of_tu`), or the tail of a tag whose start was lost (`inder> yes`).
Fragments are recognised by the names of the tags the pipeline's models write (`TAG_NAMES`); a lone `<`, `</` or
`<|` at the very end is always a cut tag.
"""
from __future__ import annotations

import re

OPEN, CLOSE = "<reminder>", "</reminder>"
_OPEN_TAG = re.compile(r"<\s*reminder\s*>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"<\s*/\s*reminder\s*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<\s*/?\s*[a-zA-Z_][\w-]*\s*/?\s*>|<\|[\w-]*\|>")  # <end_of_turn>, <br/>, <|eot_id|>
# The tags the pipeline's prompts and models write (reminder, memory block, Gemma-3 and Llama-3 control tokens):
# a broken fragment of one of them is recognised anywhere in the text.
TAG_NAMES = ("reminder", "memories", "start_of_turn", "end_of_turn", "start_of_image", "end_of_image",
             "image_soft_token", "bos", "eos", "pad", "unk", "mask", "eot_id", "begin_of_text", "end_of_text",
             "start_header_id", "end_header_id")
_MIN_FRAGMENT = 2  # letters of a tag name that make a fragment recognisable ("<re", "er>"); shorter: only at the end


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


_PREFIXES = _alternation(n[:k] for n in TAG_NAMES for k in range(_MIN_FRAGMENT, len(n) + 1))
_SUFFIXES = _alternation(n[k:] for n in TAG_NAMES for k in range(0, len(n) - _MIN_FRAGMENT + 1))
_BROKEN_TAG = re.compile(
    rf"</?\|?(?:{_PREFIXES})(?![\w-])"  # the start of a tag, cut before its '>': "</remind", "<end_of_tu"
    rf"|(?<![\w-])/?(?:{_SUFFIXES})\|?>"  # the end of a tag that lost its start: "inder>", "_of_turn>", "eot_id|>"
    r"|</?\|?(?:[a-zA-Z_][\w-]*)?$"  # anything tag-like cut at the very end: "<", "</", "<|", "<xyz"
    r"|^\|?>",  # a closing bracket left at the very start
    re.IGNORECASE)
_WS = re.compile(r"\s+")


def fold(text: str) -> str:
    """Strip tags, whole or broken (see the module docstring), and fold whitespace to single spaces."""
    text = _ANY_TAG.sub(" ", text)
    text = _BROKEN_TAG.sub(" ", _WS.sub(" ", text).strip())
    return _WS.sub(" ", text).strip()


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
