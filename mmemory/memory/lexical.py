"""Query-side cues that need no model: BM25 over stemmed content words, the speaker a question names, and time.

    tokenize("When did Caroline go to the support group?")  -> ['caroline', 'go', 'support', 'group']
    bm25(query_tokens, [doc_tokens, ...])                     -> Okapi BM25 per document
    asks_when(question), time_cue(text), named_dates(question)
    question_periods("What did she do on 3 June, 2023?", now)  -> [day of 3 June 2023]
    memory_periods("I went there yesterday", ts)             -> [day of ts, the day before]

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
    the (year, month) of its timestamp and the periods it refers to (`memory_periods`)."""

    __slots__ = ("tokens", "counts", "length", "time_cue", "year", "month", "periods")

    def __init__(self, tokens: list[str], text: str, ts: float):
        self.tokens, self.counts, self.length = tokens, Counter(tokens), len(tokens)
        self.time_cue = time_cue(text)
        d = datetime.fromtimestamp(ts, timezone.utc)
        self.year, self.month = d.year, d.month
        self.periods = memory_periods(text, ts)   # its day and the days it refers to ("yesterday" resolved)


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


# --- dates: relative expressions resolved against the memory's own time ----------------------------------------------
# A period is a closed range of proleptic-Gregorian day numbers (`date.toordinal()`). A memory refers to its own day
# and to every day its text places something on ("yesterday", "last Saturday", "two weeks ago", "next month", "in
# May", "on 7 May 2023"), each resolved against the memory's timestamp; a question names periods ("in June 2023",
# "on 3 June, 2023", "two weeks before August 11, 2023"), the ones without a year resolved against the time it is
# asked. `names_period` is 1 when the two overlap.

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_ABBR = {"mon": 0, "tue": 1, "tues": 1, "wed": 2, "thu": 3, "thur": 3, "thurs": 3, "fri": 4, "sat": 5,
                 "sun": 6, **{d: i for i, d in enumerate(_WEEKDAYS)}}
_MONTH_ABBR = {**{m[:3]: i + 1 for i, m in enumerate(MONTHS)}, "sept": 9, **{m: i + 1 for i, m in enumerate(MONTHS)}}
_NUMBER = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
           "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "a couple": 2, "couple of": 2,
           "a few": 3, "few": 3, "several": 3}
_MONTH_RE = "|".join(sorted(_MONTH_ABBR, key=len, reverse=True))
_WEEKDAY_RE = "|".join(sorted(_WEEKDAY_ABBR, key=len, reverse=True))
_NUMBER_RE = r"\d{1,2}|" + "|".join(sorted((re.escape(k) for k in _NUMBER), key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d\d"
# explicit dates: "7 May 2023", "the 7th of May, 2023", "May 7, 2023", "May 7th", "May 2023", "2023"
_DAY_MONTH = re.compile(rf"\b(?:the\s+)?(\d{{1,2}}){_ORD}\s+(?:of\s+)?({_MONTH_RE})\.?(?:,?\s+({_YEAR}))?\b", re.I)
_MONTH_DAY = re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}}){_ORD}\b(?!\s*(?::|am|pm))(?:,?\s+({_YEAR}))?", re.I)
_MONTH_YEAR = re.compile(rf"\b({_MONTH_RE})\.?,?\s+({_YEAR})\b", re.I)
_MONTH_ALONE = re.compile(rf"\b(?:(last|next|this|in|since|during|early|late|mid|of)\s+)({'|'.join(MONTHS)})\b", re.I)
_YEAR_ALONE = re.compile(rf"\b({_YEAR})\b")
# relative expressions
_SIMPLE_DAY = re.compile(r"\b(yesterday|today|tonight|tomorrow|last night|this (?:morning|afternoon|evening)|"
                         r"the other day|the day before yesterday)\b", re.I)
_UNIT_REF = re.compile(r"\b(last|this|next|this past|past)\s+(week|weekend|month|year|summer|winter|spring|fall|"
                       rf"autumn|{_WEEKDAY_RE})\b", re.I)
_AGO = re.compile(rf"\b({_NUMBER_RE})\s+(days?|weeks?|weekends?|months?|years?)\s+(ago|before|after|later|from now)"
                  r"\b", re.I)
_SEASONS = {"spring": (3, 5), "summer": (6, 8), "fall": (9, 11), "autumn": (9, 11), "winter": (12, 2)}


def _month_period(year: int, month: int) -> tuple[int, int]:
    from calendar import monthrange
    from datetime import date

    return date(year, month, 1).toordinal(), date(year, month, monthrange(year, month)[1]).toordinal()


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    k = year * 12 + (month - 1) + n
    return k // 12, k % 12 + 1


def _year_period(year: int) -> tuple[int, int]:
    from datetime import date

    return date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()


def _number(text: str) -> int:
    t = text.lower()
    return int(t) if t.isdigit() else _NUMBER[t]


def _safe_day(year: int, month: int, day: int) -> int | None:
    from datetime import date

    try:
        return date(year, month, day).toordinal()
    except ValueError:
        return None


def _explicit_periods(text: str, ref: "datetime", past: bool) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """((start, end) in the text, period) for each explicit date; a date without a year is the nearest one in the
    past of `ref` (past=True) or the nearest one on either side (a month within the same year)."""
    out, taken = [], []

    def free(span):
        return all(span[1] <= a or span[0] >= b for a, b in taken)

    def year_for(month, day=1):
        if past and (month, day) > (ref.month, ref.day):
            return ref.year - 1
        return ref.year

    for pattern, day_group, month_group in ((_DAY_MONTH, 1, 2), (_MONTH_DAY, 2, 1)):  # "7 May 2023", "May 7, 2023"
        for m in pattern.finditer(text):
            if not free(m.span()):
                continue
            day, month = int(m.group(day_group)), _MONTH_ABBR[m.group(month_group).lower()]
            year = int(m.group(3)) if m.group(3) else year_for(month, day)
            d = _safe_day(year, month, day)
            if d is not None:
                out.append((m.span(), (d, d)))
                taken.append(m.span())
    for m in _MONTH_YEAR.finditer(text):
        if free(m.span()):
            out.append((m.span(), _month_period(int(m.group(2)), _MONTH_ABBR[m.group(1).lower()])))
            taken.append(m.span())
    for m in _MONTH_ALONE.finditer(text):
        if not free(m.span()):
            continue
        month, word = MONTHS.index(m.group(2).lower()) + 1, m.group(1).lower()
        if word == "next":
            year = ref.year + (month <= ref.month)
        elif word == "last":
            year = ref.year - (month >= ref.month)
        else:
            year = year_for(month) if past else ref.year
        out.append((m.span(), _month_period(year, month)))
        taken.append(m.span())
    for m in _YEAR_ALONE.finditer(text):
        if free(m.span()):
            out.append((m.span(), _year_period(int(m.group(1)))))
    return out


def _relative_periods(text: str, ref: "datetime") -> list[tuple[int, int]]:
    """The periods of the relative expressions of `text` ("yesterday", "last weekend", "two weeks ago"), resolved
    against the day of `ref`."""
    day = ref.toordinal()
    weekday = ref.weekday()   # Monday 0
    week_start = day - weekday
    out = []
    for m in _SIMPLE_DAY.finditer(text):
        w = m.group(1).lower()
        if w in ("yesterday", "last night"):
            out.append((day - 1, day - 1))
        elif w == "tomorrow":
            out.append((day + 1, day + 1))
        elif w == "the other day":
            out.append((day - 7, day - 1))
        elif w == "the day before yesterday":
            out.append((day - 2, day - 2))
        else:
            out.append((day, day))
    for m in _UNIT_REF.finditer(text):
        which, unit = m.group(1).lower(), m.group(2).lower()
        step = {"last": -1, "past": -1, "this past": -1, "this": 0, "next": 1}[which]
        if unit == "week":
            out.append((week_start + 7 * step, week_start + 7 * step + 6))
        elif unit == "weekend":
            sat = week_start + 5   # the weekend of this week; "last weekend" on a Saturday or Sunday is the one before
            if step < 0:
                sat = sat - 7 if weekday < 5 or which == "last" and weekday >= 5 else sat
                sat = sat if sat < day else sat - 7
            elif step > 0:
                sat = sat + 7 if weekday >= 5 else sat
            out.append((sat, sat + 1))
        elif unit == "month":
            y, mo = _add_months(ref.year, ref.month, step)
            out.append(_month_period(y, mo))
        elif unit == "year":
            out.append(_year_period(ref.year + step))
        elif unit in _SEASONS:
            first, last = _SEASONS[unit]
            year = ref.year + step if step else ref.year
            if step < 0 and ref.month > last and first <= last:
                year = ref.year   # "last summer" said in the autumn: this year's
            lo_y, lo_m = (year - 1, first) if first > last else (year, first)
            out.append((_month_period(lo_y, lo_m)[0], _month_period(year, last)[1]))
        else:   # a weekday
            target = _WEEKDAY_ABBR[unit]
            if step < 0:
                back = (weekday - target) % 7 or 7
                out.append((day - back, day - back))
            elif step > 0:
                ahead = (target - weekday) % 7 or 7
                out.append((day + ahead, day + ahead))
            else:
                out.append((week_start + target, week_start + target))
    for m in _AGO.finditer(text):
        n, unit, direction = _number(m.group(1)), m.group(2).lower().rstrip("s"), m.group(3).lower()
        sign = -1 if direction in ("ago", "before") else 1
        if unit == "day":
            out.append((day + sign * n, day + sign * n))
        elif unit in ("week", "weekend"):
            centre = day + sign * 7 * n
            out.append((centre - 3, centre + 3))
        elif unit == "month":
            y, mo = _add_months(ref.year, ref.month, sign * n)
            out.append(_month_period(y, mo))
        else:
            out.append(_year_period(ref.year + sign * n))
    return out


def _utc(ts: float) -> "datetime":
    return datetime.fromtimestamp(ts, timezone.utc)


def memory_periods(text: str, ts: float) -> tuple[tuple[int, int], ...]:
    """The periods a memory refers to: its own day, and each date its text names, relative ones ("yesterday",
    "last Saturday", "two weeks ago", "next month") resolved against its timestamp `ts` (unix seconds)."""
    ref = _utc(ts)
    text = text or ""
    periods = [(ref.toordinal(), ref.toordinal())]
    periods += [p for _, p in _explicit_periods(text, ref, past=False)]
    periods += _relative_periods(text, ref)
    return tuple(dict.fromkeys(periods))


def question_periods(question: str, now: float) -> list[tuple[int, int]]:
    """The periods a question names ("in June 2023", "on 3 June, 2023", "last weekend before April 10, 2023"): an
    explicit date, or a relative one anchored on the explicit date it follows ("two weeks before August 11, 2023");
    a date without a year is the latest one not after `now` (unix seconds). [] when it names none."""
    question = question or ""
    explicit = _explicit_periods(question, _utc(now), past=True)
    out = [p for _, p in explicit]
    for (start, _), (lo, _hi) in explicit:   # relative phrases just before an explicit date are anchored on it
        head = question[max(0, start - 40):start]
        if re.search(r"\b(before|after|prior to)\s*$", head, re.I):
            ref = datetime.fromordinal(lo).replace(tzinfo=timezone.utc)
            head = re.sub(r"\b(?:the\s+)?day\s+(?:before|prior to)\s*$", "yesterday", head, flags=re.I)
            head = re.sub(r"\b(?:the\s+)?(week|weekend|month|year)\s+(?:before|prior to)\s*$", r"last \1", head,
                          flags=re.I)
            head = re.sub(r"\b(?:the\s+)?(week|weekend|month|year)\s+after\s*$", r"next \1", head, flags=re.I)
            out += _relative_periods(re.sub(r"\s*\b(before|prior to)\s*$", " ago", head, flags=re.I), ref)
    return list(dict.fromkeys(out))


def names_period(periods: list[tuple[int, int]], memory: tuple[tuple[int, int], ...]) -> bool:
    """A question's periods overlap any period a memory refers to (its own day included)."""
    return any(lo <= b and a <= hi for lo, hi in periods for a, b in memory)
