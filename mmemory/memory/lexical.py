"""Query-side cues that need no model: BM25 over stemmed content words, the speaker a question names, and time.

    tokenize("When did Caroline go to the support group?")  -> ['caroline', 'go', 'support', 'group']
    bm25(query_tokens, [doc_tokens, ...])                     -> Okapi BM25 per document
    asks_when(question), time_cue(text), named_dates(question)

Questions about a long conversation are short and name people and things; their function words ("what", "did",
"the") match every turn, so they are dropped, and words are Porter-stemmed ("painted" finds "painting").
"""
from __future__ import annotations

import math
import re
from collections import Counter
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
# A standard English function-word list (the SMART/Lucene core) plus question words; content words never appear here.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both but by
can could did do does doing down during each few for from further had has have having he her here hers herself him
himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other
our ours ourselves out over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which while who whom why will
with would you your yours yourself yourselves s t d ll m re ve don didn doesn isn wasn weren
""".split())


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _porter().stem(word)


@lru_cache(maxsize=1)
def _porter():
    from nltk.stem import PorterStemmer  # pure Python: needs no nltk data download

    return PorterStemmer()


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed content words (function words dropped); '' -> []."""
    return [_stem(w) for w in _WORD.findall((text or "").lower()) if w not in STOPWORDS]


def bm25(query: list[str], docs: list[list[str]], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Okapi BM25 of a tokenized query against tokenized documents (idf log(1 + (N - n + .5) / (n + .5)) >= 0)."""
    n_docs = len(docs)
    if not n_docs or not query:
        return np.zeros(n_docs)
    lengths = np.fromiter((len(d) for d in docs), np.float64, n_docs)
    terms = set(query)
    tf = {w: np.zeros(n_docs) for w in terms}
    for j, d in enumerate(docs):
        for w, c in Counter(x for x in d if x in terms).items():
            tf[w][j] = c
    return _bm25_scores(query, tf, lengths, k1, b)


def _bm25_scores(query: list[str], tf: dict[str, np.ndarray], lengths: np.ndarray, k1: float, b: float) -> np.ndarray:
    """BM25 from each query term's per-document counts `tf` and the documents' lengths."""
    n_docs = len(lengths)
    norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
    score = np.zeros(n_docs)
    for w in query:
        df = int(np.count_nonzero(tf[w]))
        if df:
            idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
            score += idf * tf[w] * (k1 + 1) / (tf[w] + norm)
    return score


class DocCues:
    """What the text cues need of one memory, computed once: its key's tokens (counted), the time cue of its text,
    and the (year, month) of its timestamp."""

    __slots__ = ("tokens", "counts", "length", "time_cue", "year", "month")

    def __init__(self, tokens: list[str], text: str, ts: float):
        self.tokens, self.counts, self.length = tokens, Counter(tokens), len(tokens)
        self.time_cue = time_cue(text)
        d = datetime.fromtimestamp(ts, timezone.utc)
        self.year, self.month = d.year, d.month


def bm25_counted(query: list[str], docs: list[DocCues], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """`bm25(query, [d.tokens for d in docs])`, the same numbers, from each document's counted tokens."""
    n_docs = len(docs)
    if not n_docs or not query:
        return np.zeros(n_docs)
    lengths = np.fromiter((d.length for d in docs), np.float64, n_docs)
    tf = {w: np.fromiter((d.counts.get(w, 0) for d in docs), np.float64, n_docs) for w in set(query)}
    return _bm25_scores(query, tf, lengths, k1, b)


_WHEN = re.compile(r"^\s*(when|what (date|day|month|year|time)|how long ago|which (year|month|day))\b", re.I)
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_TIME = re.compile(r"\b(yesterday|today|tonight|tomorrow|ago|last|next|recently|week|weekend|weeks|month|months|"
                   r"year|years|since|" + "|".join(MONTHS) + r"|monday|tuesday|wednesday|thursday|friday|saturday|"
                   r"sunday|(19|20)\d\d)\b", re.I)
_DATE = re.compile(r"\b(" + "|".join(MONTHS) + r")?\s*((19|20)\d\d)\b", re.I)


def asks_when(question: str) -> bool:
    """A question about the time of something ("When did ...", "What year ...")."""
    return bool(_WHEN.search(question or ""))


def time_cue(text: str) -> bool:
    """The text places something in time (yesterday, last week, a month, a weekday, a year)."""
    return bool(_TIME.search(text or ""))


def named_dates(question: str) -> list[tuple[int, int | None]]:
    """(year, month or None) for each date a question names ("in May 2023" -> (2023, 5); "in 2022" -> (2022, None))."""
    out = []
    for m in _DATE.finditer(question or ""):
        month = MONTHS.index(m.group(1).lower()) + 1 if m.group(1) else None
        out.append((int(m.group(2)), month))
    return out


def names_speaker(question: str, speaker: str) -> bool:
    """The question names this speaker (a whole-word, case-insensitive match; generic roles never count)."""
    s = (speaker or "").strip().lower()
    if not s or s in ("user", "assistant", "system"):
        return False
    return re.search(rf"\b{re.escape(s)}\b", (question or "").lower()) is not None
