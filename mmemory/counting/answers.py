"""`parse_count`: the person count a generated answer states, or None when it states none.

    parse_count("There are 12 people.")   # 12
    parse_count("twenty-one")             # 21
    parse_count("열두 명이 있습니다")        # 12
    parse_count("I can't tell.")          # None (the evaluation scores it as wrong and counts it)

What is read, wherever it stands in the answer:
- digits: "12", "12명", "1,200" (thousands separators); a decimal gives its integer part ("2.5" -> 2);
- English number words from zero to 999: "twelve", "twenty-one" / "twenty one", "one hundred and five";
  "a single" is 1; "no people" / "no one" / "nobody" / "none" (and "no person", "no humans", ...) are 0;
- Korean with a counter (명, 분 or 사람 after it): native numbers 한 .. 아흔아홉 ("한 명", "열두 명", "스무 명",
  "스물한 명") and Sino-Korean ones ("십이 명", "이십일 명"); a native number standing alone as the whole answer
  ("다섯", "열둘"); "아무도 없", "한 명도 없" and "사람이 없" are 0. A Korean number word without a counter is not read
  inside a sentence: 이, 세, 네 and 한 are also ordinary words ("this", "yes", ...).

Several numbers: **the first number stated wins** (by its position in the text), e.g. "3 or 4 people" -> 3 and
"I see two groups of 5" -> 2. A model trained on "There are {n} people." states its count first; taking the first
number keeps the rule simple and never picks a number by whether it is right. A zero phrase starting at the same
place as a number wins over it ("한 명도 없습니다" -> 0).
"""
from __future__ import annotations

import re

__all__ = ["parse_count"]

_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_TENS["fourty"] = 40  # a common misspelling
_WORD = re.compile(r"[a-z]+")

_DIGITS = re.compile(r"\d{1,3}(?:,\d{3})+(?![\d,])|\d+")
_EN_ZERO = re.compile(r"\b(?:nobody|none|no\s+(?:one|people|persons?|humans?|individuals?|pedestrians?|shoppers?|"
                      r"visitors?|figures?|men|women|customers?))\b")
_EN_SINGLE = re.compile(r"\ba\s+single\b")

_KO_COUNTER = r"\s*(?:명|분|사람)"
_KO_TENS = {"열": 10, "스물": 20, "스무": 20, "서른": 30, "마흔": 40, "쉰": 50, "예순": 60, "일흔": 70, "여든": 80,
            "아흔": 90}
_KO_UNITS = {"하나": 1, "한": 1, "둘": 2, "두": 2, "셋": 3, "세": 3, "석": 3, "서": 3, "넷": 4, "네": 4, "넉": 4,
             "너": 4, "다섯": 5, "여섯": 6, "일곱": 7, "여덟": 8, "아홉": 9}


def _alt(words) -> str:
    return "|".join(sorted(words, key=len, reverse=True))  # longest first: 하나 before 한, 셋 before 세


_KO_NATIVE = f"(?P<tens>{_alt(_KO_TENS)})?(?P<unit>{_alt(_KO_UNITS)})?"
_KO_NATIVE_COUNTED = re.compile(rf"(?<![가-힣]){_KO_NATIVE}(?={_KO_COUNTER})")
_KO_NATIVE_ALONE = re.compile(rf"(?P<tens>{_alt(_KO_TENS)})?(?P<unit>하나|둘|셋|넷|다섯|여섯|일곱|여덟|아홉)?")
_KO_SINO_COUNTED = re.compile(rf"(?<![가-힣])(?P<n>[일이삼사오육칠팔구십백]+)(?={_KO_COUNTER})")
_KO_ZERO = re.compile(r"(?:아무도|한\s*(?:명|분|사람)도|사람(?:이|은|도)?)\s*(?:아무도\s*)?없")
_SINO_DIGITS = dict(zip("일이삼사오육칠팔구", range(1, 10)))


def _english_number(text: str) -> tuple[int, int] | None:
    """(position, value) of the first English number phrase."""
    tokens = list(_WORD.finditer(text))
    for i, tok in enumerate(tokens):
        w = tok.group()
        if w not in _SMALL and w not in _TENS and w != "hundred":
            continue

        def nxt(j: int, allowed_gap: str = r"[\s-]+"):
            if j < len(tokens) and re.fullmatch(allowed_gap, text[tokens[j - 1].end():tokens[j].start()]):
                return tokens[j].group()
            return None

        def below_hundred(j: int) -> tuple[int, int] | None:
            """(value, tokens used) of a number below 100 starting at token j."""
            w = tokens[j].group()
            if w in _TENS:
                u = nxt(j + 1)
                if u is not None and 1 <= _SMALL.get(u, 0) <= 9:
                    return _TENS[w] + _SMALL[u], 2
                return _TENS[w], 1
            if w in _SMALL:
                return _SMALL[w], 1
            return None

        if w == "hundred":  # "a hundred" / "hundred"
            value, j = 100, i + 1
        else:
            value, used = below_hundred(i)
            j = i + used
            if value and value < 10 and nxt(j) == "hundred":
                value, j = value * 100, j + 1
            else:
                return tok.start(), value
        if nxt(j) == "and":
            j += 1
        if j < len(tokens) and nxt(j) is not None:
            rest = below_hundred(j)
            if rest is not None:
                value += rest[0]
        return tok.start(), value
    return None


def _sino(s: str) -> int | None:
    """십이 -> 12, 이십일 -> 21, 백 -> 100; None for a string that is not a well-formed Sino-Korean number."""
    total, cur = 0, None
    for ch in s:
        if ch in _SINO_DIGITS:
            if cur is not None:
                return None  # two digits in a row (이이) is not a number
            cur = _SINO_DIGITS[ch]
        else:
            total += (1 if cur is None else cur) * (10 if ch == "십" else 100)
            cur = None
    return total + (cur or 0)


def _native(m: re.Match) -> int | None:
    if not (m.group("tens") or m.group("unit")):
        return None
    return _KO_TENS.get(m.group("tens") or "", 0) + _KO_UNITS.get(m.group("unit") or "", 0)


def _candidates(text: str) -> list[tuple[int, int, int]]:
    """(position, priority, value) of every kind of number's first occurrence; zero phrases have priority 0."""
    low = text.lower()
    out = []
    if m := _DIGITS.search(low):
        out.append((m.start(), 1, int(m.group().replace(",", ""))))
    if m := _EN_ZERO.search(low):
        out.append((m.start(), 0, 0))
    if m := _EN_SINGLE.search(low):
        out.append((m.start(), 1, 1))
    if got := _english_number(low):
        out.append((got[0], 1, got[1]))
    if m := _KO_ZERO.search(text):
        out.append((m.start(), 0, 0))
    for m in _KO_NATIVE_COUNTED.finditer(text):
        value = _native(m)
        if value is not None:
            out.append((m.start(), 1, value))
            break
    for m in _KO_SINO_COUNTED.finditer(text):
        value = _sino(m.group("n"))
        if value is not None:
            out.append((m.start(), 1, value))
            break
    bare = re.sub(r"[\s.!?。,]+", "", text)
    if bare and (m := _KO_NATIVE_ALONE.fullmatch(bare)) and (value := _native(m)) is not None:
        out.append((0, 1, value))
    return out


def parse_count(text: str | None) -> int | None:
    """The count an answer states (the first number in it; see the module docstring), or None when none."""
    if not text:
        return None
    found = _candidates(str(text))
    if not found:
        return None
    return min(found)[2]
