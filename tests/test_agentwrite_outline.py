"""Plan parsing on what models really write, target inference, scaffold counts."""

import pytest

from lw.agentwrite import check_plan, infer_length, parse_plan, scaffold_steps
from lw.agentwrite.outline import PlanStep, plan_step_limit, unread_counts_note, zh_number
from lw.errors import LwError


def steps(text, target=None):
    return [(s.main_point, s.words) for s in parse_plan(text, target)]


def test_the_canonical_format_with_blank_lines_and_thousands():
    text = ("Paragraph 1 - Main Point: How the Republic began - Word Count: 400 words\n\n"
            "Paragraph 2 - Main Point: Civil wars - and the end of the Republic - Word Count: "
            "1,000 words\n\n\nParagraph 3 - Main Point: Augustus - Word Count: 600 words\n")
    assert steps(text) == [("How the Republic began", 400),
                           ("Civil wars - and the end of the Republic", 1000),
                           ("Augustus", 600)]


@pytest.mark.parametrize("text", [
    "**Paragraph 1** - Main Point: A - Word Count: 300 words\n**Paragraph 2** - Main Point: B - Word Count: 500 words",
    "**Paragraph 1 - Main Point:** A - **Word Count:** 300 words\n**Paragraph 2 - Main Point:** B - **Word Count:** 500 words",
    "1. Paragraph 1 - Main Point: A - Word Count: 300 words\n2. Paragraph 2 - Main Point: B - Word Count: 500 words",
    "Here is the plan:\n\n1. Main Point: A (300 words)\n2. Main Point: B (500 words)\n\nGood luck!",
    "- Paragraph 1 – Main Point: A – Word Count: 300 words\n- Paragraph 2 — Main Point: B — Word Count: 500 words",
    "### Paragraph 1 - Main Point: A\nWord Count: 300 words\n### Paragraph 2 - Main Point: B\nWord Count: 500 words",
])
def test_markup_numbering_dashes_and_split_lines(text):
    assert steps(text) == [("A", 300), ("B", 500)]


def test_chinese_plans():
    text = ("第1段 - 主要观点：介绍长城的由来 - 字数：600字\n\n"
            "第二段 - 主要观点：明代修筑-防御体系 - 字数：1,200字\n"
            "第十二段 - 主要观点：今天的长城 - 字数：300字")
    assert steps(text) == [("介绍长城的由来", 600), ("明代修筑-防御体系", 1200), ("今天的长城", 300)]
    assert [s.index for s in parse_plan(text)] == [1, 2, 3]


def test_missing_counts_share_the_remaining_target():
    text = ("Paragraph 1 - Main Point: A - Word Count: 400 words\nParagraph 2 - Main Point: B\n"
            "Paragraph 3 - Main Point: C")
    parsed = parse_plan(text, length=1600)
    assert [(s.words, s.count_source) for s in parsed] == [(400, "plan"), (600, "default"),
                                                           (600, "default")]
    assert [s.words for s in parse_plan(text, length=10000)][1:] == [1000, 1000]  # capped
    assert [s.words for s in parse_plan(text, length=500)][1:] == [200, 200]  # floored
    assert [s.words for s in parse_plan(text)][1:] == [500, 500]  # no target: 500 each


def test_garbage_and_overlong_plans_are_errors_that_say_why():
    with pytest.raises(LwError, match="no plan step found.*Paragraph 1 - Main Point"):
        parse_plan("Once upon a time there was a lighthouse.\nThe end.")
    with pytest.raises(LwError, match="no plan step found"):
        parse_plan("")
    many = "\n".join(f"Paragraph {i} - Main Point: p{i} - Word Count: 200 words"
                     for i in range(1, 52))
    with pytest.raises(LwError, match="51 steps; plans over 50"):
        parse_plan(many)
    assert len(parse_plan(many.rsplit("\n", 1)[0])) == 50


def test_check_plan_wants_enough_steps_for_the_target():
    two = parse_plan("Paragraph 1 - Main Point: A - Word Count: 900 words\n"
                     "Paragraph 2 - Main Point: B - Word Count: 900 words")
    assert check_plan(two, 2000) is None
    assert "cannot reach 5000 words" in check_plan(two, 5000)


@pytest.mark.parametrize(("instruction", "expected"), [
    ("Write a 5000-word essay on tides", (5000, "instruction")),
    ("Write a 10k word novel", (10000, "instruction")),
    ("Please write 2,500 words about bees", (2500, "instruction")),
    ("写一篇3000字的文章", (3000, "instruction")),
    ("写一部2万字的小说", (20000, "instruction")),
    ("Write an essay about tides", (2000, "default")),
])
def test_infer_length(instruction, expected):
    assert infer_length(instruction) == expected


def test_scaffold_counts_add_up():
    assert scaffold_steps(2000, 400) == [400] * 5
    assert sum(scaffold_steps(3333, 400)) == 3333
    assert scaffold_steps(150) == [150]
    # Past the paper's 50 steps the step limit grows with the target (500 words a step on
    # average), so no scaffolded step goes over the 1,000 words a plan step may hold.
    assert scaffold_steps(100000, 400) == [500] * 200
    assert scaffold_steps(30000, 1000) == [1000] * 30
    with pytest.raises(LwError, match="positive target"):
        scaffold_steps(0)


def test_the_step_limit_grows_with_the_target():
    assert plan_step_limit() == plan_step_limit(2000) == plan_step_limit(25000) == 50
    assert plan_step_limit(60000) == 120
    # A 60,000-word target cannot be planned in 50 steps of at most 1,000 words; 60 can be now.
    sixty = "\n".join(f"Paragraph {i} - Main Point: p{i} - Word Count: 1000 words"
                      for i in range(1, 61))
    assert check_plan(parse_plan(sixty, 60000), 60000) is None
    with pytest.raises(LwError, match="plans over 50 are rejected for a 2000-word target"):
        parse_plan(sixty, 2000)
    too_many = "\n".join(f"Paragraph {i} - Main Point: p - Word Count: 300 words"
                         for i in range(1, 122))
    with pytest.raises(LwError, match="121 steps; plans over 120 are rejected for a 60000-word "
                                      "target.*plan_step_limit"):
        parse_plan(too_many, 60000)


@pytest.mark.parametrize(("instruction", "expected"), [
    ("Write 0 words about tides", (0, "instruction")),  # never silently the 2,000 default
    ("Write -300 words about tides", (-300, "instruction")),
    ("Write a 300 - 500 words essay", (500, "instruction")),  # a range's dash is no minus sign
    ("写一篇0字的文章", (0, "instruction")),
])
def test_impossible_lengths_are_read_as_written(instruction, expected):
    assert infer_length(instruction) == expected


def test_zh_numbers():
    assert [zh_number(x) for x in ["3", "十", "十二", "二十", "二十三", "一百零五"]] == \
        [3, 10, 12, 20, 23, 105]


# Plan lines as GPT-4o and smaller models write them, one step each: (line, words, count_source).
# Ranges read as their mean, rounded half up.
REALISTIC = [
    ("Paragraph 1 - Main Point: X - Word Count: 400 words", 400, "plan"),
    ("Paragraph 1 - Main Point: X - Word Count: 400", 400, "plan"),
    ("Paragraph 1 - Main Point: X - Word Count: approximately 400 words", 400, "plan"),
    ("Paragraph 1 - Main Point: X - Word Count: about 400 words.", 400, "plan"),
    ("Paragraph 1 - Main Point: X - Word Count: around 400 words", 400, "plan"),
    ("Paragraph 1 - Main Point: X - Word Count: roughly 400 words", 400, "plan"),
    ("Paragraph 1 - Main Point: X - Word Count: ~400 words", 400, "plan"),
    ("Paragraph 1 - Main Point: X - Word Count: Approx. 400 words", 400, "plan"),
    ("Paragraph 1 - Main Point: X - Word Count: 400-500 words", 450, "range"),
    ("Paragraph 1 - Main Point: X - Word Count: 300 to 400 words", 350, "range"),
    ("Paragraph 1 - Main Point: X - Word Count: 300–401 words", 351, "range"),
    ("Paragraph 1 - Main Point: X - Word Count: about 300 - 400 words", 350, "range"),
    ("**Paragraph 1 - Main Point:** X - **Word Count:** approximately 1,000 words", 1000, "plan"),
    ("Paragraph 1 - Main Point: X (approximately 400 words)", 400, "plan"),
    ("Paragraph 1: X - ~1.2k words", 1200, "plan"),
    ("1. Main Point: X (around 250 words)", 250, "plan"),
    ("段落1 - 主要观点：X - 字数：400字", 400, "plan"),
    ("段落一 - 主要观点：X - 字数：约600字", 600, "plan"),
    ("第1段 - 主要观点：X - 字数：600字左右", 600, "plan"),
    ("第一段 - 主要观点：X - 字数：大约 600 字", 600, "plan"),
    ("第1段 - 主要观点：X - 字数：约600字左右。", 600, "plan"),
    ("第1段 - 主要观点：X - 字数：500-600字", 550, "range"),
    ("第1段 - 主要观点：X - 字数：500~600字", 550, "range"),
    ("第1段 - 主要观点：X - 字数：500至600字", 550, "range"),
    ("段落1 - 主要观点：X - 字数要求：1，200字", 1200, "plan"),
    ("第1段：X（约600字）", 600, "plan"),
    # Unreadable: a share of the target (2,000 for one step: capped at 1,000), flagged.
    ("Paragraph 1 - Main Point: X - Word Count: a few hundred words", 1000, "default"),
    ("Paragraph 1 - Main Point: X - Word Count: 3 paragraphs", 1000, "default"),
    ("Paragraph 1 - Main Point: X", 1000, "default"),
    ("第1段 - 主要观点：X - 字数：适中", 1000, "default"),
]


@pytest.mark.parametrize(("line", "words", "source"), REALISTIC)
def test_realistic_plan_lines(line, words, source):
    (step,) = parse_plan(line, length=2000)
    assert (step.main_point, step.words, step.count_source) == ("X", words, source)
    assert step.source == line


def test_unread_counts_are_flagged_noted_and_refused_when_strict():
    text = ("Paragraph 1 - Main Point: A - Word Count: approximately 400 words\n"
            "Paragraph 2 - Main Point: B - Word Count: a few hundred words\n"
            "Paragraph 3 - Main Point: C")
    parsed = parse_plan(text, length=1600)
    assert [(s.words, s.count_source, s.count_text) for s in parsed] == [
        (400, "plan", "approximately 400 words"), (600, "default", "a few hundred words"),
        (600, "default", "")]
    note = unread_counts_note(parsed, 1600)
    assert "step 2 ('a few hundred words'), step 3 (none given)" in note
    assert "given 600 words each" in note and "1600-word target" in note
    assert unread_counts_note(parse_plan(text.split("\n")[0], 1600), 1600) == ""
    with pytest.raises(LwError, match="word count not read for step 2"):
        parse_plan(text, length=1600, strict=True)


def test_main_point_and_count_on_lines_of_their_own():
    text = ("**Paragraph 1**\n- Main Point: Introduce the tides\n"
            "- Word Count: approximately 400 words\n\n"
            "**Paragraph 2**\n- Main Point: Why the moon matters - about 500 words\n"
            "**第3段**\n- 主要观点：潮汐与生活\n- 字数：约600字")
    assert steps(text) == [("Introduce the tides", 400), ("Why the moon matters", 500),
                           ("潮汐与生活", 600)]
    assert parse_plan(text)[0].source == ("**Paragraph 1**\n- Main Point: Introduce the tides\n"
                                          "- Word Count: approximately 400 words")


def test_steps_stored_before_count_source_still_load():
    old = {"index": 1, "main_point": "A", "words": 500, "words_given": False}
    assert PlanStep.from_dict(old).count_source == "default"
    assert PlanStep.from_dict({**old, "words_given": True}).count_source == "plan"
    step = parse_plan("Paragraph 1 - Main Point: A - Word Count: 400-500 words")[0]
    assert PlanStep.from_dict(step.to_dict()) == step
