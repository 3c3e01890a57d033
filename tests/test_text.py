"""count_words against LongBench-Write's published definition (official evaluation/pred.py)."""

import re

import pytest

from lw.text import count_words, language


def reference_count(text: str) -> int:
    # The published definition, restated: Chinese characters plus \b-delimited ASCII words.
    return len(re.findall(r"[\u4e00-\u9fff]", text)) + len(re.findall(r"\b[a-zA-Z]+\b", text))


CASES = [
    ("", 0),
    ("Hello, world!", 2),
    ("The year 2024 had 366 days.", 4),  # digits are not words
    ("don't stop", 3),  # the apostrophe splits: don / t / stop
    ("well-known state-of-the-art", 6),
    ("你好世界", 4),
    ("写一篇1000字的文章", 7),
    ("LongWriter 写作", 3),
    ("AI模型", 2),  # 'AI' touches 模 (a word character), so no \b: only the 2 characters count
    ("abc123 x_y café", 0),  # glued to digits, underscore, accented letter: no words
    ("line one\nline two\n\n", 4),
    ("**Bold** _italic_ `code`", 2),  # _italic_ has underscores on both sides
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_count_words_known_cases(text, expected):
    assert count_words(text) == expected
    assert reference_count(text) == expected


def test_count_words_matches_reference_on_mixed_text():
    pieces = ["Paragraph", "1", "-", "第一段", "主要观点", "：", "words", "600字", "x2", "é", "\n",
              "Rome's", "empire,", "（罗马）", "K-12", "__init__"]
    import random

    rng = random.Random(0)
    for _ in range(500):
        text = "".join(rng.choice(pieces) + rng.choice(["", " ", "\n"]) for _ in range(12))
        assert count_words(text) == reference_count(text), text


def test_count_words_none_is_zero():
    assert count_words(None) == 0


@pytest.mark.parametrize(("text", "lang"), [
    ("Write a 2000-word essay", "en"),
    ("写一篇2000字的文章", "zh"),
    ("用 English 写", "zh"),
    ("", "en"),
])
def test_language(text, lang):
    assert language(text) == lang


def test_repetition_tells_prose_from_loops():
    from lw.text import repetition

    prose = ("The lighthouse keeper climbed the stairs at dusk. She lit the lamp, checked the "
             "lens for salt, and wrote the weather in her log before the storm arrived.")
    loop = prose + " " + " ".join(["The light of the moon helps you know."] * 30)
    assert repetition(prose) == 0.0
    assert repetition(loop) > 0.8
    assert repetition("") == 0.0 and repetition("one two") == 0.0
    assert 0 < repetition("a b c d a b c d e") < 0.5


def test_loop_free_cuts_at_the_third_repeat():
    from lw.text import loop_free

    prose = "The keeper lit the lamp. Ships passed in the night. She wrote in her log."
    assert loop_free(prose) == prose
    looped = "Intro here. " + "The light of the moon helps you know.\n\n" * 20
    cut = loop_free(looped)
    assert cut.count("light of the moon") == 2 and cut.startswith("Intro here.")
    assert count_words(cut) == 2 + 2 * 8
    assert loop_free("") == ""
