"""Final answers extracted from answer texts, and agreement between answers.

A final answer is a comparable key with a kind: ``option:C`` (a multiple-choice letter in any of
the usual phrasings), ``number:42`` (GSM8K ``#### 42``, ``\\boxed{\\frac{1}{2}}``, "the answer is
42", otherwise the last number), ``bool:yes`` (yes/no/true/false) or ``text:...`` (the normalised
answer span). Letters, numbers and booleans agree when equal; texts agree when they say the same
thing by a cheap measure (token F1 or containment), so free-text QA answers can agree too.
Plain string work on the request path: no model, no scikit-learn.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence

# "The answer is (C)", "answer: C", "Final answer: **C**", "the correct option is C." ...
_LETTER_MARKED = re.compile(
    r"(?:answer|option|choice)(?:\s+is)?(?:\s+(?:option|choice))?\s*[:：]?\s*\**\s*\(?((?-i:[A-J]))\b\)?"
    r"(?-i:(?!\s+[a-z]))(?![\w'-])",
    re.IGNORECASE,
)
_LETTER_BOLD = re.compile(r"\*\*\s*\(?([A-J])\)?[.:]?\s*\*\*")
# The whole answer starts with the option: "C", "(C) Paris", "C) Paris", "C. Paris".
_LETTER_LEAD = re.compile(r"^\W{0,3}\(?([A-J])(?:\)|\.(?=\s|$)|:|$|\s*$)")
_BOXED = re.compile(r"\\boxed\s*\{")
_HASHES = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"(?:final answer|answer)(?:\s+is)?\s*[:：]?\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?![\d,]))?|-?\.\d+")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_BOOL = re.compile(r"^\W*(yes|no|true|false)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")
# Function words carry no answer: "It stands in Paris" and "It stands in Rome" must not agree.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "in",
        "on",
        "at",
        "of",
        "to",
        "for",
        "by",
        "with",
        "from",
        "and",
        "or",
        "as",
        "that",
        "this",
        "these",
        "those",
        "there",
        "their",
        "he",
        "she",
        "they",
        "his",
        "her",
        "i",
        "you",
        "we",
        "so",
        "answer",
        "final",
    ]
)
_LOWER_OPTIONS = frozenset("abcdefghij")
# Text answers agree from this token F1 on (SQuAD-style normalisation) or by containment.
TEXT_F1 = 0.6
# A text answer longer than this many words is compared by its last sentence only.
_SPAN_WORDS = 40
_TAIL_CHARS = 2000
_CLOSING = re.compile(
    r"let me know|hope (?:this|that|it) helps|feel free|(?:any|other|more|further) questions|good luck|"
    r"happy to help|glad to help",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_MARKED_WORDS = ("answer", "option", "choice")
_ANSWER_IS_WORDS = ("final answer", "answer")


def keyword_matches(pattern: re.Pattern[str], text: str, keywords: Sequence[str]) -> Iterator[re.Match[str]]:
    """What ``pattern.finditer(text)`` yields, for a case-insensitive pattern that starts with one of
    ``keywords`` (lowercase ASCII): tried only where a keyword occurs.

    Python's regex engine tries a case-insensitive alternation at every position of the text (about
    0.5 ms for a 2,000-token answer, most of the answer scorer's time); str.find finds the few places
    where it can start in microseconds. Non-overlapping, left to right, like finditer. (Unicode case
    folds such as the long s in "anſwer" are not found, which finditer would match.)
    """
    # One byte per character, ASCII letters lowered: every character stays where it was (str.lower can
    # change the length, str.translate is slower than the regex it replaces).
    lowered = text.encode("ascii", "replace").lower()
    starts = sorted({i for word in keywords for i in _occurrences(lowered, word.encode())})
    end = -1
    for start in starts:
        if start < end:
            continue
        m = pattern.match(text, start)
        if m:
            end = max(m.end(), start + 1)
            yield m


def _occurrences(text: bytes, word: bytes) -> Iterator[int]:
    i = text.find(word)
    while i >= 0:
        yield i
        i = text.find(word, i + 1)


def final_answer(text: str) -> str:
    """A comparable key for the answer's final answer ("text:" when the text is empty)."""
    for pick in (_boxed, _hashes, _marked, _lead):
        key = pick(text)
        if key:
            return key
    span = _last_span(text)
    numbers = _NUMBER.findall(span)
    return (_number_key(numbers[-1]) if numbers else "") or _text_key(span)


def _boxed(text: str) -> str:
    starts = [m.end() for m in _BOXED.finditer(text)]
    return _value_key(_balanced(text, starts[-1])) if starts else ""


def _balanced(text: str, start: int) -> str:
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]


def _hashes(text: str) -> str:
    found = _HASHES.findall(text)
    return _value_key(found[-1]) if found else ""


def _marked(text: str) -> str:
    letters = [m.group(1) for m in keyword_matches(_LETTER_MARKED, text, _MARKED_WORDS)]
    letters = letters or _LETTER_BOLD.findall(text)
    if letters:
        return f"option:{letters[-1].upper()}"
    found = [m.group(1) for m in keyword_matches(_ANSWER_IS, text, _ANSWER_IS_WORDS)]
    return _value_key(_SENTENCE_END.split(found[-1])[0]) if found else ""


def _lead(text: str) -> str:
    m = _LETTER_LEAD.match(text.strip())
    if m:
        return f"option:{m.group(1).upper()}"
    b = _BOOL.match(text)
    return f"bool:{_BOOLS[b.group(1).lower()]}" if b else ""


_BOOLS = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def _value_key(value: str) -> str:
    """The key of an explicitly marked value: a number, a boolean, or its text."""
    value = _FRAC.sub(r"(\1)/(\2)", value).replace("\\left", "").replace("\\right", "").strip()
    b = _BOOL.match(value)
    if b and len(_WORD.findall(value.lower())) <= 3:
        return f"bool:{_BOOLS[b.group(1).lower()]}"
    cleaned = re.sub(r"[()$\\{}]|\^\s*\\?circ", " ", value)
    numbers = _NUMBER.findall(cleaned)
    if numbers and len(_WORD.findall(cleaned.lower())) <= len(numbers) + 3:
        return _number_key(numbers[0]) or _text_key(value)
    return _text_key(value)


def _number_key(value: str) -> str:
    value = value.replace(",", "").replace(" ", "")
    try:
        if "/" in value:
            num, den = value.split("/")
            number = float(num) / float(den)
        else:
            number = float(value)
    except (ValueError, ZeroDivisionError):
        return ""
    return f"number:{number:.6g}"


def _last_span(text: str) -> str:
    if len(text.split(maxsplit=_SPAN_WORDS)) <= _SPAN_WORDS:
        return text
    # Only the tail can hold the last sentence; splitting all of a long answer costs for nothing.
    tail = text[-_TAIL_CHARS:].strip()
    sentences = [s for s in _SENTENCE.split(tail) if _WORD.search(s.lower())]
    # Chat models sign off ("Let me know if ..."): two such answers must not agree on the sign-off.
    content = [s for s in sentences if not (s.rstrip().endswith("?") or _CLOSING.search(s))]
    return (content or sentences or [tail])[-1]


def _text_key(text: str) -> str:
    words = _WORD.findall(text.lower())
    # A lone lower-case letter ("(b)", "answer is a") is an option, not the article "a".
    if len(words) == 1 and len(words[0]) == 1 and words[0] in _LOWER_OPTIONS:
        return f"option:{words[0].upper()}"
    return "text:" + " ".join(_tokens(text))


def _tokens(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    return [w for w in words if w not in _STOPWORDS] or words


def same_answer(a: str, b: str) -> bool:
    """Whether two final-answer keys (from :func:`final_answer`) say the same thing."""
    if a == b:
        return a != "text:"
    if not (a.startswith("text:") and b.startswith("text:")):
        return False
    ta, tb = a[5:].split(), b[5:].split()
    if not ta or not tb:
        return False
    short, long = sorted((ta, tb), key=len)
    if len(short) <= 5 and _contains(long, short):
        return True
    return _f1(ta, tb) >= TEXT_F1


def _contains(long: list[str], short: list[str]) -> bool:
    n = len(short)
    return any(long[i : i + n] == short for i in range(len(long) - n + 1))


def _f1(a: list[str], b: list[str]) -> float:
    common = sum((Counter(a) & Counter(b)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def agreement(answer: str, others: Sequence[str]) -> float | None:
    """Share of ``others`` whose final answer says the same as ``answer``'s; None without others."""
    if not others:
        return None
    key = final_answer(answer)
    return sum(same_answer(key, final_answer(o)) for o in others) / len(others)


def majority(answers: Sequence[str]) -> int:
    """Index of the first answer that agrees with the most answers (ties: the earliest)."""
    if not answers:
        raise ValueError("majority() needs at least one answer")
    keys = [final_answer(a) for a in answers]
    votes = [sum(same_answer(k, other) for other in keys) for k in keys]
    best = max(votes)
    return votes.index(best)
