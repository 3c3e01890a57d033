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

VERSION = 1  # bump on any change to these definitions
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


def parse_judgement(text: str) -> dict[str, float]:
    """The six ratings from a judge's reply.

    Accepts a JSON object anywhere in the text: fenced (```json ... ```), after prose, over many
    lines, with ratings as numbers or strings ("4", "4/5"), with keys in any case. Rejects a
    missing dimension or a rating outside 1-5.

    Raises:
        JudgementError: no JSON object, a missing dimension, or an invalid rating.
    """
    obj = _find_json_object(text or "")
    if obj is None:
        raise JudgementError(f"no JSON object in the judge's reply: {(text or '')[:120]!r}")
    by_key = {_norm(k): v for k, v in obj.items()}
    scores = {}
    for dim in DIMENSIONS:
        if _norm(dim) not in by_key:
            raise JudgementError(f"the judgement lacks '{dim}'")
        value = _rating(by_key[_norm(dim)])
        if value is None or not 1 <= value <= 5:
            raise JudgementError(f"'{dim}' must be a rating from 1 to 5, got {by_key[_norm(dim)]!r}")
        scores[dim] = value
    return scores


def _norm(key) -> str:
    return re.sub(r"[^a-z]", "", str(key).lower())


def _rating(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    m = re.match(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*5)?\s*$", str(value))
    return float(m.group(1)) if m else None


def _find_json_object(text: str) -> dict | None:
    """The last parsable {...} object in ``text`` (fenced blocks first)."""
    fenced = re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", text, flags=re.S)
    decoder = json.JSONDecoder()
    candidates = list(reversed(fenced))
    starts = [m.start() for m in re.finditer(r"\{", text)]
    for start in reversed(starts):
        candidates.append(text[start:])
    for cand in candidates:
        try:
            obj, _ = decoder.raw_decode(cand)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj:
            return obj
    return None
