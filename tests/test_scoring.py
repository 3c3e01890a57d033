"""LongBench-Write scoring against the paper's published definitions."""

import math

import pytest

from lw.scoring import (
    DIMENSIONS,
    JudgementError,
    bucket,
    dimension_score,
    length_score,
    overall,
    parse_judgement,
)


def published(req, lp):  # the paper's formula, restated for parity
    if lp > req:
        return 100 * max(0, 1 - (lp / req - 1) / 3)
    return 100 * max(0, 1 - (req / lp - 1) / 2)


@pytest.mark.parametrize("required", [100, 500, 2000, 10000])
@pytest.mark.parametrize("factor", [0.2, 1 / 3, 0.5, 0.9, 1.0, 1.1, 2.0, 3.9, 4.0, 6.0])
def test_length_score_matches_the_formula_on_a_grid(required, factor):
    produced = required * factor
    assert length_score(required, produced) == pytest.approx(published(required, produced))


def test_length_score_edges():
    assert length_score(1000, 1000) == 100
    assert length_score(1000, 4000) == pytest.approx(0)  # 4x: zero
    assert length_score(900, 300) == pytest.approx(0)  # a third: zero
    assert length_score(1000, 2500) == pytest.approx(50)
    assert length_score(1000, 500) == pytest.approx(50)
    assert length_score(1000, 0) == 0  # the official script divides by zero here
    with pytest.raises(ValueError):
        length_score(0, 10)


def test_buckets_match_the_paper():
    assert [bucket(x) for x in (100, 499, 500, 1999, 2000, 3999, 4000, 20000)] == \
        ["[0,500)", "[0,500)", "[500,2k)", "[500,2k)", "[2k,4k)", "[2k,4k)", "[4k,20k]",
         "[4k,20k]"]


def test_quality_and_overall():
    assert dimension_score(1) == 0 and dimension_score(5) == 100 and dimension_score(4) == 75
    assert overall(80, 60) == 70
    assert overall(None, 60) is None and overall(math.nan, 1) is None


GOOD = {d: 4 for d in DIMENSIONS}


@pytest.mark.parametrize("text", [
    '```json\n{"Relevance": 4, "Accuracy": 4, "Coherence": 4, "Clarity": 4, '
    '"Breadth and Depth": 4, "Reading Experience": 4}\n```',
    'Here is my judgement. The text is fine.\n{"Relevance": 4, "Accuracy": 4, "Coherence": 4,'
    ' "Clarity": 4, "Breadth and Depth": 4, "Reading Experience": 4} I hope this helps.',
    '{\n  "Relevance": "4",\n  "Accuracy": "4/5",\n  "Coherence": 4.0,\n  "Clarity": 4,\n'
    '  "breadth and depth": 4,\n  "Reading experience": 4\n}',
    '```\n{"Analysis": {"note": "x"}, "Relevance": 4, "Accuracy": 4, "Coherence": 4, '
    '"Clarity": 4, "Breadth and Depth": 4, "Reading Experience": 4}\n```',
])
def test_parse_judgement_accepts_real_formats(text):
    assert parse_judgement(text) == GOOD


@pytest.mark.parametrize(("text", "why"), [
    ("The answer is good, 4 out of 5.", "no JSON object"),
    ('{"Relevance": 4, "Accuracy": 4, "Coherence": 4, "Clarity": 4, "Breadth and Depth": 4}',
     "lacks 'Reading Experience'"),
    ('{"Relevance": 7, "Accuracy": 4, "Coherence": 4, "Clarity": 4, "Breadth and Depth": 4, '
     '"Reading Experience": 4}', "'Relevance' must be a rating from 1 to 5"),
    ('{"Relevance": "good", "Accuracy": 4, "Coherence": 4, "Clarity": 4, '
     '"Breadth and Depth": 4, "Reading Experience": 4}', "must be a rating"),
    ("", "no JSON object"),
])
def test_parse_judgement_rejects_with_a_reason(text, why):
    with pytest.raises(JudgementError, match=why):
        parse_judgement(text)
