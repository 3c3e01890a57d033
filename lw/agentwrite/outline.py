"""AgentWrite step I's outline, the plan as text: read and checked (arXiv 2408.07055, 3.1).

``parse_plan`` reads what models really write: ``Paragraph 1 - Main Point: ... - Word Count: 400
words``, with blank lines, bold or numbered markup, ``1,000 words``, dashes inside the main point,
the main point or the count on a line of its own, the Chinese ``第1段``/``第一段``/``段落1 -
主要观点：... - 字数：600字``, hedged counts (``approximately 400 words``, ``about``, ``around``,
``~400 words``, ``约600字``, ``600字左右``) and ranges (``400-500 words``, ``300 to 400 words``,
``300~400字``), which read as their mean.

    steps = parse_plan(text, length=3000)
    steps[0].main_point, steps[0].words, steps[0].count_source  # "plan", "range" or "default"
    note = unread_counts_note(steps, 3000)  # "" when every count was read

A step whose count cannot be read is never silently given a length: it gets a share of the target
with ``count_source="default"`` (and ``unread_counts_note`` says so for the record), or, with
``strict=True``, parsing fails.
"""

import math
import re
from dataclasses import asdict, dataclass

from lw.errors import LwError

MAX_STEPS = 50  # the official pipeline skips plans longer than this
MIN_WORDS, MAX_WORDS = 200, 1000  # per paragraph, as the plan prompt asks
# Above 25,000 words the paper's 50 steps would force paragraphs averaging over 500 words, and
# above 50,000 no plan could fit at all: there the step limit grows so that a plan averaging 500
# words a paragraph fits (``plan_step_limit``).
STEP_WORDS_FLOOR = 500
DEFAULT_TARGET = 2000
NO_TARGET_SHARE = 500  # an unread count's length when no target is known

_ZH_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_ZH_NUM = "[0-9零一二两三四五六七八九十百]+"
_STEP = re.compile(
    r"^(?:\d+\s*[.)、]\s*)?(?:paragraph|section|part|step)\s*(?P<n>\d+)"
    rf"|^第\s*(?P<zh>{_ZH_NUM})\s*[段部节章]|^段落\s*(?P<zh2>{_ZH_NUM})"
    r"|^(?P<bare>\d+)\s*[.)、]\s*(?=.*(?:main\s*point|主要观点|主要内容))",
    re.I)
_POINT = re.compile(r"(?:main\s*point|主要观点|主要内容)\s*[:：]\s*", re.I)
_LABEL = re.compile(r"(?:word\s*count|words(?=\s*[:：])|字数(?:要求)?)\s*[:：]?\s*", re.I)
_HEDGE = (r"(?:(?:approximately|approx\.?|about|around|roughly|circa|ca\.|some|nearly|"
          r"close\s+to|up\s+to|at\s+least|at\s+most|~|≈|约为|大约|大概|约|不少于|不超过)\s*)*")
_NUM = r"\d[\d,，]*(?:\.\d+)?\s*[kK千]?"
_SEP = r"\s*(?:words?|字)?\s*(?:-|–|—|~|～|to|至|到)\s*"
_UNIT = r"\s*(?:words?\b|字)"
_AROUND = r"(?:\s*(?:左右|上下))?"
_AMOUNT = re.compile(rf"{_HEDGE}(?P<a>{_NUM})(?:{_SEP}{_HEDGE}(?P<b>{_NUM}))?"
                     rf"(?P<unit>{_UNIT})?{_AROUND}", re.I)
# A count with no label ("- 400 words", "(about 400 words)", "（约600字）") ends the line.
_BARE = re.compile(rf"(?:^|[-–—(（\[|,，;；]\s*)(?P<amount>{_HEDGE}{_NUM}(?:{_SEP}{_HEDGE}{_NUM})?"
                   rf"{_UNIT}{_AROUND})\s*[)）\]]?\s*[.。]?\s*$", re.I)
_MARKUP = re.compile(r"[*_`#>]+")
_TRIM = " -–—:：|,，;；(（"


@dataclass
class PlanStep:
    """One planned paragraph.

    ``index`` is 1-based, ``words`` the target length; ``count_source`` says where it came from:
    "plan" (a number in the plan), "range" (the mean of a range in the plan) or "default" (none
    could be read: a share of the target). ``count_text`` is the count as written ("" if none),
    ``source`` the plan line(s) the step was read from, as written (the official write prompt
    gets it as ``$STEP$``).
    """

    index: int
    main_point: str
    words: int
    count_source: str = "plan"
    count_text: str = ""
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PlanStep":
        """A stored step; records made before ``count_source`` carried ``words_given``."""
        d = dict(d)
        if "words_given" in d:
            d.setdefault("count_source", "plan" if d.pop("words_given") else "default")
        return cls(**d)


def zh_number(text: str) -> int:
    """'12' or Chinese numerals up to the hundreds ('十二', '二十', '一百零五') as an int."""
    if text.isdigit():
        return int(text)
    total, digit = 0, 0
    for ch in text:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch == "十":
            total += (digit or 1) * 10
            digit = 0
        elif ch == "百":
            total += (digit or 1) * 100
            digit = 0
    return total + digit


def _clean(line: str) -> str:
    line = _MARKUP.sub("", line).strip()
    return re.sub(r"^[-•·]\s+", "", line)  # a bullet, not a dash inside the text


def parse_plan(text: str, length: int | None = None, strict: bool = False) -> list[PlanStep]:
    """Steps from a plan reply.

    Counts are read as written, hedges ("about", "约", "左右") dropped; a range ("300-400
    words", "300 to 400 words", "300~400字") reads as its mean, rounded half up (350), with
    ``count_source="range"``: the planner meant somewhere in between, and the mean keeps the
    plan's total where the planner put it.

    Args:
        text: the model's plan.
        length: the whole piece's length. A step whose count cannot be read (none given,
            or "a few hundred words") gets what the read counts leave of it, shared out and kept
            to 200-1,000 words, marked ``count_source="default"``; without a target, 500.
        strict: raise instead when any step's count cannot be read.

    Returns:
        PlanStep list in order (indices renumbered 1..n).

    Raises:
        LwError: no recognisable step, more steps than ``plan_step_limit(length)`` (50
            up to a 25,000-word target), or (strict) an unread count.
    """
    found: list[dict] = []
    for raw in (text or "").splitlines():
        line = _clean(raw)
        if not line:
            continue
        m = _STEP.match(line)
        if m is None:
            if found:
                _continuation(found[-1], line, raw)
            continue
        step = {"main_point": "", "words": None, "count_source": "default", "count_text": "",
                "source": raw.strip()}
        rest = line[m.end():]
        p = _POINT.search(rest)
        rest = rest[p.end():] if p else re.sub(r"^\s*[-–—:：.)、]*\s*", "", rest)
        count = _count(rest)
        if count is not None:
            rest = rest[:count[0]]
            _set_count(step, *count[1:])
        step["main_point"] = rest.strip(_TRIM)
        found.append(step)
    if not found:
        raise LwError("no plan step found: expected lines like 'Paragraph 1 - Main Point: ... - "
                      f"Word Count: 400 words'. The reply began: {(text or '')[:200]!r}")
    limit = plan_step_limit(length)
    if len(found) > limit:
        whose = f" for a {length}-word target" if length else ""
        raise LwError(f"the plan has {len(found)} steps; plans over {limit} are rejected{whose} "
                      "(too many steps break the write loop, as in the paper's data pipeline; "
                      "see lw.agentwrite.plan_step_limit).")
    steps = _fill_counts(found, length)
    if strict and (note := unread_counts_note(steps, length)):
        raise LwError(f"{note}. Ask for a plan with a number of words on every line.")
    return steps


def _continuation(step: dict, line: str, raw: str) -> None:
    """A line under a step: its main point ("Main Point: ...") or count ("Word Count: 300
    words", "(约600字)") when the step line lacked them; anything else is not part of the plan."""
    p = _POINT.match(line)
    if p and not step["main_point"]:
        rest = line[p.end():]
        count = _count(rest)
        if count is not None:
            rest = rest[:count[0]]
            if step["words"] is None:
                _set_count(step, *count[1:])
        step["main_point"] = rest.strip(_TRIM)
        step["source"] += "\n" + raw.strip()
        return
    count = _count(line)
    if count is not None and count[0] == 0 and step["words"] is None and not step["count_text"]:
        _set_count(step, *count[1:])
        step["source"] += "\n" + raw.strip()


def _set_count(step: dict, words, source: str, written: str) -> None:
    step["words"], step["count_source"], step["count_text"] = words, source, written


def _count(rest: str):
    """(where it starts, words or None, count_source, the count as written) for the count at
    the end of a step's text, or None when it has none."""
    labels = list(_LABEL.finditer(rest))
    if labels:
        label = labels[-1]
        written = rest[label.end():].strip(" .。)）]")
        return (label.start(), *_amount(written), written)
    m = _BARE.search(rest)
    if m:
        return (m.start(), *_amount(m.group("amount")), m.group("amount").strip())
    return None


def _amount(written: str) -> tuple[int | None, str]:
    """(words, "plan" | "range") from a written count, or (None, "default") if unreadable."""
    m = _AMOUNT.match(written.strip())
    if m is None:
        return None, "default"
    after = written.strip()[m.end():].lstrip()
    if m.group("unit") is None and after[:1].isalpha():  # "4 paragraphs", "3 sections"
        return None, "default"
    a = _number(m.group("a"))
    if m.group("b") is None:
        return (a, "plan") if a > 0 else (None, "default")
    b = _number(m.group("b"))
    return ((a + b + 1) // 2, "range") if a > 0 and b > 0 else (None, "default")


def _number(text: str) -> int:
    text = re.sub(r"[,，\s]", "", text)
    scale = 1000 if text[-1] in "kK千" else 1
    return round(float(text.rstrip("kK千")) * scale)


def _fill_counts(found: list[dict], length: int | None) -> list[PlanStep]:
    """PlanSteps; an unread count gets what the read counts leave of the target, shared out
    and kept to 200-1,000 a paragraph (500 without a target), flagged ``count_source="default"``
    (``unread_counts_note`` reports it)."""
    missing = [f for f in found if f["words"] is None]
    share = NO_TARGET_SHARE
    if missing and length:
        given = sum(f["words"] for f in found if f["words"] is not None)
        share = min(MAX_WORDS, max(MIN_WORDS, math.ceil((length - given) / len(missing))))
    return [PlanStep(i + 1, f["main_point"], share if f["words"] is None else f["words"],
                     f["count_source"], f["count_text"], f["source"])
            for i, f in enumerate(found)]


def unread_counts_note(steps: list[PlanStep], length: int | None = None) -> str:
    """What a record should say about steps whose count was not read ("" if none): which steps,
    what was written there, and the length each was given instead."""
    unread = [s for s in steps if s.count_source == "default"]
    if not unread:
        return ""
    listed = ", ".join(f"step {s.index} ({s.count_text!r})" if s.count_text else
                       f"step {s.index} (none given)" for s in unread)
    basis = (f"what the read counts leave of the {length}-word target, shared out and kept "
             f"to {MIN_WORDS}-{MAX_WORDS}" if length else "the default without a target")
    return (f"word count not read for {listed}: given {unread[0].words} words each ({basis}; "
            "count_source='default')")


def check_plan(steps: list[PlanStep], length: int) -> str | None:
    """Why a parsed plan cannot serve the target (None if it can): too few steps to reach the
    target at 1,000 words a paragraph, or only empty main points."""
    need = max(1, math.ceil(length / MAX_WORDS))
    if len(steps) < need:
        return f"{len(steps)} step(s) cannot reach {length} words (need at least {need})"
    if not any(s.main_point for s in steps):
        return "every main point is empty"
    return None


def plan_step_limit(length: int | None = None) -> int:
    """The most steps a plan may have: the paper's 50 (its data pipeline skips longer plans),
    raised for targets over 25,000 words to enough steps for paragraphs averaging 500 words
    (60,000 words: 120 steps). Without it a target over 50,000 words could get no plan at all,
    since a step holds at most 1,000 words."""
    if not length:
        return MAX_STEPS
    return max(MAX_STEPS, math.ceil(length / STEP_WORDS_FLOOR))


def scaffold_steps(length: int, words_per_step: int = 400) -> list[int]:
    """Word counts for a scaffolded plan: ``length`` split into equal paragraphs of about
    ``words_per_step`` words (kept to 200-1,000 each, and to ``plan_step_limit`` steps)."""
    if length < 1:
        raise LwError(f"a scaffolded plan needs a positive target, got {length} words.")
    per = min(MAX_WORDS, max(MIN_WORDS, words_per_step))
    n = min(plan_step_limit(length),
            max(1, math.ceil(length / MAX_WORDS), round(length / per)))
    base = length // n
    return [base + (1 if i < length - base * n else 0) for i in range(n)]


def infer_length(instruction: str, default: int = DEFAULT_TARGET) -> tuple[int, str]:
    """The length an instruction asks for: ("5000-word essay" -> 5000, "写一篇3000字" -> 3000,
    "10k words" -> 10000). Returns (words, "instruction") or (default, "default").

    The length is returned as written, even where it cannot be a target ("write 0 words" -> 0,
    "write -300 words" -> -300): the caller decides (``make_items`` refuses it), so such an
    instruction never silently gets the default."""
    text = instruction.replace("，", ",")
    m = re.search(r"(?P<neg>(?:^|(?<=\s))-)?(\d[\d,]*(?:\.\d+)?)\s*([kK])?\s*[- ]?\s*"
                  r"(?:words?\b|字)", text)
    if m:
        value = float(m.group(2).replace(",", "")) * (1000 if m.group(3) else 1)
        return (-1 if m.group("neg") else 1) * int(value), "instruction"
    m = re.search(r"(\d+(?:\.\d+)?)\s*万字", text)
    if m:
        return int(float(m.group(1)) * 10000), "instruction"
    return default, "default"
