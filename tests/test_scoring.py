"""LongBench-Write scoring against the paper's published definitions."""

import json
import math
import random

import pytest

from lw.scoring import (
    DIMENSIONS,
    JudgementError,
    bucket,
    dimension_score,
    length_score,
    overall,
    parse_judgement,
    read_official,
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


# --- The official reading (evaluation/eval_quality.py) and the kit's default one -------------

SIX = dict.fromkeys(DIMENSIONS, 4)


def _json(obj, indent=None):
    return json.dumps(obj, indent=indent, ensure_ascii=False)


@pytest.mark.parametrize(("text", "scores"), [
    (_json(SIX), {d: 4.0 for d in DIMENSIONS}),
    ("```json\n" + _json({"Analysis": "fine", **SIX}, indent=2) + "\n```", GOOD),
    ("Some thoughts first.\n```json\n" + _json(SIX) + "\n```\nThat is all.", GOOD),
    # a raw line break inside the Analysis string: the script deletes every newline first
    ('{"Analysis": "line one\nline two", ' + _json(SIX)[1:], GOOD),
    # an Analysis that is itself an object: the outer dict is the script's
    (_json({"Analysis": {"Relevance": "on topic", "Clarity": "clear"}, **SIX}), GOOD),
    # values as float() reads them, no range check
    (_json({**SIX, "Relevance": "5", "Accuracy": 4.5, "Clarity": 7, "Coherence": True}),
     {**GOOD, "Relevance": 5.0, "Accuracy": 4.5, "Clarity": 7.0, "Coherence": 1.0}),
    (_json({**SIX, "Relevance": -1}), {**GOOD, "Relevance": -1.0}),
    ('{"Relevance": 4, "Accuracy": 4, "Coherence": 4, "Clarity": 4, "Breadth and Depth": 4,'
     ' "Reading Experience": 4, "Extra": [1, 2]}', GOOD),
    # the first matching ```json block wins, even an example
    ("```json\n" + _json({**SIX, "Relevance": 1}) + "\n```\nno, rather:\n```json\n"
     + _json(SIX) + "\n```", {**GOOD, "Relevance": 1.0}),
])
def test_official_reading_accepts_what_the_script_accepts(text, scores):
    assert parse_judgement(text, official=True) == scores
    reading = read_official(text)
    assert reading.accepted and reading.scores == scores and reading.reason is None


@pytest.mark.parametrize(("text", "tries", "why"), [
    ("The answer is good, 4 out of 5.", 1, "not JSON"),
    ("", 1, "not JSON"),
    ("Here it is: " + _json(SIX), 1, "not JSON"),  # prose around the JSON: json.loads fails
    (_json(SIX) + " I hope this helps.", 1, "not JSON"),
    ("```json " + _json(SIX) + "```", 1, "does not match"),  # no newlines around the block
    ("```\n" + _json(SIX) + "\n```", 1, "not JSON"),  # a fence without "json"
    ("```json\r\n" + _json(SIX) + "\r\n```", 1, "does not match"),
    ('{"Analysis": "a\tb", ' + _json(SIX)[1:], 1, "not JSON"),  # raw tab: json.loads is strict
    ("{'Relevance': 4}", 1, "not JSON"),
    (_json({**SIX, "Relevance": 4}).replace("}", ",}"), 1, "not JSON"),  # trailing comma
    ("null", 1, "null"),
    (_json({d: 4 for d in DIMENSIONS[:5]}), 1, "lacks 'Reading Experience'"),
    (_json({d: 4 for d in DIMENSIONS[1:]}), 2, "lacks 'Relevance'"),
    (_json({d: 4 for d in DIMENSIONS if d != "Clarity"}), 2, "lacks 'Clarity'"),
    (_json({"Analysis": "x"}), 2, "lacks 'Relevance'"),
    (_json({d.lower(): 4 for d in DIMENSIONS}), 2, "lacks 'Relevance'"),  # keys are exact
    (_json({"scores": SIX}), 2, "lacks 'Relevance'"),
    (_json([4, 4, 4]), 2, "lacks 'Relevance'"),
    (_json("Relevance only"), 2, "lacks 'Accuracy'"),
])
def test_official_reading_asks_again_where_the_script_does(text, tries, why):
    assert parse_judgement(text, official=True) is None
    reading = read_official(text)
    assert not reading.accepted and reading.scores is None
    assert reading.tries == tries and why in reading.reason


@pytest.mark.parametrize("text", [
    _json({**SIX, "Relevance": "4/5"}),  # float("4/5") fails at the script's totals
    _json({**SIX, "Relevance": None}),
    _json({**SIX, "Relevance": [4]}),
    _json(list(DIMENSIONS)),  # a list holding every dimension name passes `in`
    _json(" ".join(DIMENSIONS)),  # so does a string holding them all
    "4", "true", "false", "0",  # `in` raises, but the scores are not None: written
])
def test_official_reading_flags_replies_the_script_accepts_but_cannot_total(text):
    reading = read_official(text)
    assert reading.accepted and reading.scores is None and "crashes" in reading.reason
    with pytest.raises(JudgementError, match="crashes"):
        parse_judgement(text, official=True)


def test_default_parser_reads_what_the_official_one_rejects():
    assert parse_judgement("Here it is: " + _json(SIX) + " Done.") == GOOD
    assert parse_judgement("```\n" + _json(SIX) + "\n```") == GOOD
    assert parse_judgement("```json " + _json(SIX) + "```") == GOOD
    assert parse_judgement('{"Analysis": "a\tb", ' + _json(SIX)[1:]) == GOOD
    assert parse_judgement("```json\r\n" + _json({"Analysis": "x\r\ny", **SIX}) + "\r\n```") == GOOD
    assert parse_judgement(_json({**SIX, "Relevance": "4/5"})) == GOOD
    assert parse_judgement(_json({"Analysis": "x", "scores": SIX})) == GOOD


def test_default_parser_returns_the_outer_object_not_the_inner_one():
    # The inner object even holds all six names (as text), and the outer misses nothing.
    inner = {d: "a remark" for d in DIMENSIONS}
    text = "Analysis first.\n" + _json({"Analysis": inner, **{**SIX, "Clarity": 2}}, indent=2)
    assert parse_judgement(text) == {**GOOD, "Clarity": 2.0}
    # With numbers in the inner one too, the outer one is still the judgement.
    inner = {d: 1 for d in DIMENSIONS}
    text = "Note: " + _json({"Analysis": inner, **SIX})
    assert parse_judgement(text) == GOOD


@pytest.mark.parametrize(("text", "why"), [
    (_json({**SIX, "Relevance": 7}), "'Relevance' must be a rating from 1 to 5"),
    (_json({**SIX, "Relevance": 0}), "must be a rating from 1 to 5"),
    ('{"Relevance": NaN' + _json(SIX)[15:], "must be a rating from 1 to 5"),
    (_json({d: 4 for d in DIMENSIONS if d != "Clarity"}), "lacks 'Clarity'"),
])
def test_default_parser_range_checks_and_never_fills_a_missing_dimension(text, why):
    with pytest.raises(JudgementError, match=why):
        parse_judgement(text)


def reply_corpus(n=3000, seed=14):
    """Judge replies of many shapes, built from parts a judge model writes (and gets wrong)."""
    rng = random.Random(seed)
    values = [1, 2, 3, 4, 5, 4.5, "4", " 3 ", "4/5", True, None, 0, 7, -1, "good", [4],
              {"score": 4}, 1e0, "NaN", 2.0]
    analyses = [None, "Solid.", "line one\nline two", "tab\there", "a \\\"quoted\\\" word",
                {"Relevance": "on topic", "Clarity": "clear"}, {d: 3 for d in DIMENSIONS},
                "brace { inside }", "```json inside```"]
    wrappers = ["{}", "```json\n{}\n```", "```json {}```", "```\n{}\n```", "Verdict:\n{}",
                "{}\nThanks.", "Reasoning.\n```json\n{}\n```\nEnd.", "```json\r\n{}\r\n```",
                "```json\n{}\n```\n```json\n{}\n```"]
    corpus = []
    for _ in range(n):
        dims = list(DIMENSIONS)
        if rng.random() < 0.2:
            dims.remove(rng.choice(dims))
        obj = {}
        analysis = rng.choice(analyses)
        if analysis is not None:
            obj["Analysis"] = analysis
        for d in dims:
            key = d.lower() if rng.random() < 0.05 else d
            obj[key] = rng.choice(values) if rng.random() < 0.3 else rng.randint(1, 5)
        text = json.dumps(obj, indent=rng.choice([None, 2]), ensure_ascii=False)
        if rng.random() < 0.3:  # a judge writing raw control characters inside strings
            text = text.replace("\\n", "\n").replace("\\t", "\t")
        if rng.random() < 0.05:
            text = text.replace('"NaN"', "NaN")
        corpus.append(rng.choice(wrappers).replace("{}", text))
    return corpus


def test_default_parser_agrees_with_the_official_one_wherever_that_one_scores():
    agreed = official_only_rejected = default_only = 0
    for text in reply_corpus():
        reading = read_official(text)
        try:
            default = parse_judgement(text)
        except JudgementError:
            default = None
        if reading.scores is not None and all(1 <= v <= 5 for v in reading.scores.values()):
            assert default == reading.scores, text
            agreed += 1
        elif reading.scores is not None:
            assert default is None, text  # the official values out of range: refused
            official_only_rejected += 1
        elif default is not None:
            default_only += 1
    # The corpus exercises every case (seed 14: 317 agreed, 143 out of range, 883 read by the
    # default parser alone, 1,657 refused by both).
    assert agreed > 250 and official_only_rejected > 100 and default_only > 500
