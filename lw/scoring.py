"""LongBench-Write scoring (arXiv 2408.07055, section 4): pure functions, no I/O.

Length score for required length l and produced length l' (words; Chinese characters):
    l' > l:  100 * max(0, 1 - (l'/l - 1) / 3)     (zero at 4x the request)
    l' <= l: 100 * max(0, 1 - (l/l' - 1) / 2)     (zero at a third of it)
An empty answer scores 0 (the official script divides by zero there).

Quality: a judge rates six dimensions 1-5; each dimension's mean m becomes (m - 1) * 25 and
S_q is the mean of the six. S = (S_l + S_q) / 2.
"""

import json
import math
import re
from dataclasses import dataclass

# Bump on any change to these definitions. 2: the judge parsers (the official reading; the
# default one accepts raw line breaks and nested objects and no longer fills anything).
VERSION = 2
DIMENSIONS = ("Relevance", "Accuracy", "Coherence", "Clarity", "Breadth and Depth",
              "Reading Experience")
# Required-length buckets of LongBench-Write: [0,500), [500,2k), [2k,4k), [4k,20k]
BUCKETS = ((0, 500, "[0,500)"), (500, 2000, "[500,2k)"), (2000, 4000, "[2k,4k)"),
           (4000, math.inf, "[4k,20k]"))


def length_score(required: float, produced: float) -> float:
    """The paper's piecewise length score in [0, 100]."""
    if required <= 0:
        raise ValueError(f"required length must be positive, got {required}")
    if produced <= 0:
        return 0.0
    if produced > required:
        return 100.0 * max(0.0, 1.0 - (produced / required - 1.0) / 3.0)
    return 100.0 * max(0.0, 1.0 - (required / produced - 1.0) / 2.0)


def bucket(required: float) -> str:
    """The LongBench-Write bucket label of a required length."""
    for lo, hi, label in BUCKETS:
        if lo <= required < hi:
            return label
    raise ValueError(f"required length {required} is negative")


def dimension_score(mean_rating: float) -> float:
    """A dimension's mean 1-5 rating on the 0-100 scale: (m - 1) * 25."""
    return (mean_rating - 1.0) * 25.0


def overall(s_l: float | None, s_q: float | None) -> float | None:
    """S = (S_l + S_q) / 2, or None when either is missing."""
    if s_l is None or s_q is None or any(map(math.isnan, (s_l, s_q))):
        return None
    return (s_l + s_q) / 2.0


class JudgementError(ValueError):
    """A judge reply that does not hold six valid 1-5 ratings (the message says what is wrong)."""


# The official evaluation/eval_quality.py asks the judge again while a reply is unread and its
# counter of tries is below this.
OFFICIAL_TRIES = 5
# Why an answer the official script gave up on has no quality score (the judge and the official
# judge.jsonl reader both store it).
DROPPED = "dropped by the official rule"
_OFFICIAL_FENCE = re.compile(r"```json\n(.*?)\n```", flags=re.S)


@dataclass(frozen=True)
class OfficialReading:
    """How the official ``evaluation/eval_quality.py`` reads one judge reply.

    Attributes:
        accepted: the script stops asking and writes the item, with ``raw`` as its "scores".
        scores: the six dimensions as the script's totals read them (``float(v)``); None when
            not accepted, or when accepted but the totals cannot read it (the script then
            crashes at its last step: ``reason`` says so).
        raw: what ``json.loads`` returned (the dict the script writes, "Analysis" included).
        tries: how many of its ``OFFICIAL_TRIES`` tries the reply used up.
        reason: why the reply was not accepted or cannot be totalled; None when scored.
    """

    accepted: bool
    scores: dict[str, float] | None
    raw: object = None
    tries: int = 0
    reason: str | None = None


def read_official(text: str | None) -> OfficialReading:
    """The official script's reading of one reply, step by step (eval_quality.py at the pinned
    commit of ``lw.paper.prompts``):

    1. If the text contains "```json", keep the first match of ``r'```json\n(.*?)\n```'``
       (DOTALL); no match is an exception there: one try used.
    2. Delete every "\n" (so a line break inside a JSON string is no longer an error), then
       ``json.loads``; a failure uses one try.
    3. Test the six dimensions in order with ``dim not in scores``. At the first missing one the
       script sets its scores to None and counts a try; the next test then runs on None and
       raises, which counts another: a reply whose first missing dimension is the last one
       ("Reading Experience") uses 1 try, any other missing dimension 2. A loaded value that
       ``in`` cannot test (null, a number, true, false) raises at once: 1 try; all but null
       are not None, so the script then stops asking and writes them.
    4. Totals read ``float(scores[dim])``: no range check (7, -1, NaN pass); a value ``float``
       refuses ("4/5", null) or a written reply that is not a dict makes the script crash.
    """
    if not isinstance(text, str):  # the API's content can be null: `in` on None raises
        return OfficialReading(False, None, None, 1, "the reply has no text")
    body = text
    if "```json" in body:
        m = _OFFICIAL_FENCE.search(body)
        if m is None:
            return OfficialReading(False, None, None, 1, "a ```json fence that the official "
                                   "pattern (```json, newline, ..., newline, ```) does not match")
        body = m.group(1)
    try:
        obj = json.loads(body.replace("\n", ""))
    except (ValueError, RecursionError) as exc:
        return OfficialReading(False, None, None, 1, f"not JSON once newlines are deleted ({exc})")
    try:
        for i, dim in enumerate(DIMENSIONS):
            if dim not in obj:
                return OfficialReading(False, None, obj, 1 if i == len(DIMENSIONS) - 1 else 2,
                                       f"lacks '{dim}'")
    except TypeError:  # null, a number, true or false: `in` cannot test it
        if obj is None:  # the script's scores stay None: it asks again
            return OfficialReading(False, None, obj, 1, "the JSON is null")
        return OfficialReading(True, None, obj, 1, f"the official script writes {obj!r} as "
                               "scores and then crashes totalling it")
    try:
        scores = {dim: float(obj[dim]) for dim in DIMENSIONS}
    except (TypeError, ValueError, OverflowError) as exc:
        return OfficialReading(True, None, obj, 0, "the official script accepts this reply and "
                               f"then crashes totalling it ({exc})")
    return OfficialReading(True, scores, obj, 0, None)


def parse_judgement(text: str, official: bool = False) -> dict[str, float] | None:
    """The six ratings from a judge's reply.

    ``official=True``: exactly the official script's reading (``read_official``): its scores
    where it accepts the reply, None where it would ask again. A reply it accepts but cannot
    total (a non-numeric value, a JSON that is not an object) raises JudgementError: the script
    would crash there rather than ask again.

    Default: accepts everything the official reading accepts, with the same values, and more: a
    JSON object anywhere in the text (fenced with or without "json", after prose, over many
    lines, with raw line breaks inside strings), the object holding the six ratings even when a
    field such as "Analysis" is itself an object, ratings written "4/5", keys in any case. Values
    are read as ``float`` reads them, then must lie in 1-5.

    Raises:
        JudgementError: (default) no JSON object, a missing dimension, or an invalid rating.
    """
    reading = read_official(text)
    if official:
        if reading.accepted and reading.scores is None:
            raise JudgementError(reading.reason)
        return reading.scores
    if reading.scores is not None and isinstance(reading.raw, dict):
        obj = reading.raw  # the official reading's own object, so both agree wherever it scores
    else:
        obj = _find_judgement_object(text or "")
    if obj is None:
        raise JudgementError(f"no JSON object in the judge's reply: {(text or '')[:120]!r}")
    scores = {}
    for dim in DIMENSIONS:
        found, value = _lookup(obj, dim)
        if not found:
            raise JudgementError(f"the judgement lacks '{dim}'")
        rating = _rating(value)
        if rating is None or not 1 <= rating <= 5:
            raise JudgementError(f"'{dim}' must be a rating from 1 to 5, got {value!r}")
        scores[dim] = rating
    return scores


def _norm(key) -> str:
    return re.sub(r"[^a-z]", "", str(key).lower())


def _lookup(obj: dict, dim: str) -> tuple[bool, object]:
    """The value of ``dim`` in ``obj``: the exact key first, else one spelt differently."""
    if dim in obj:
        return True, obj[dim]
    for key, value in obj.items():
        if _norm(key) == _norm(dim):
            return True, value
    return False, None


def _rating(value) -> float | None:
    try:
        return float(value)  # as the official totals read it ("4", 4, 4.0, true)
    except (TypeError, ValueError, OverflowError):
        pass
    m = re.match(r"\s*(\d+(?:\.\d+)?)\s*/\s*5\s*$", value) if isinstance(value, str) else None
    return float(m.group(1)) if m else None


def _find_judgement_object(text: str) -> dict | None:
    """The JSON object holding the ratings: of the objects starting at each "{" that hold all
    six dimensions, the last one not nested inside another such (so "Analysis": {...} inside
    the ratings' object is passed over); without one, the object holding most (for the error
    message)."""
    # strict=False: raw line breaks and tabs inside strings, which the official reading
    # tolerates by deleting newlines, are read here without changing the text.
    decoder = json.JSONDecoder(strict=False)
    full, best, best_count = [], None, 0
    for m in re.finditer(r"\{", text):
        try:
            obj, end = decoder.raw_decode(text, m.start())
        except (ValueError, RecursionError):
            continue
        if not isinstance(obj, dict):
            continue
        count = sum(_lookup(obj, d)[0] for d in DIMENSIONS)
        if count == len(DIMENSIONS):
            full.append((m.start(), end, obj))
        elif count >= best_count and obj:
            best, best_count = obj, count
    outer = [obj for start, end, obj in full
             if not any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in full)]
    return outer[-1] if outer else best
