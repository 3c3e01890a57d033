"""AgentWrite step I: the plan (arXiv 2408.07055, section 3.1).

``parse_plan`` reads what models really write: ``Paragraph 1 - Main Point: ... - Word Count: 400
words``, with blank lines, bold or numbered markup, ``1,000 words``, dashes inside the main point,
the count on its own line, and the Chinese ``第1段``/``第一段 - 主要观点：... - 字数：600字``.

    steps = parse_plan(text, target_words=3000)
    steps[0].main_point, steps[0].words
"""

import math
import re
from dataclasses import asdict, dataclass

from lw.errors import LwError

MAX_STEPS = 50  # the official pipeline skips plans longer than this
MIN_WORDS, MAX_WORDS = 200, 1000  # per paragraph, as the plan prompt asks
DEFAULT_TARGET = 2000

_ZH_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_STEP = re.compile(
    r"^(?:\d+\s*[.)、]\s*)?(?:paragraph|section|part|step)\s*(?P<n>\d+)"
    r"|^第\s*(?P<zh>[0-9零一二两三四五六七八九十百]+)\s*[段部节章]"
    r"|^(?P<bare>\d+)\s*[.)、]\s*(?=.*(?:main\s*point|主要观点|主要内容))",
    re.I)
_POINT = re.compile(r"(?:main\s*point|主要观点|主要内容)\s*[:：]\s*", re.I)
_COUNT = re.compile(
    r"\s*(?:[-–—|,，;；]\s*)?(?:word\s*count|字数)\s*[:：]?\s*(?P<c>\d[\d,，]*)\s*(?:words?|字)?"
    r"|\s*[-–—(（]\s*(?P<c2>\d[\d,，]*)\s*(?:words?|字)\s*[)）]?",
    re.I)
_MARKUP = re.compile(r"[*_`#>]+")


@dataclass
class PlanStep:
    """One planned paragraph: 1-based ``index``, ``main_point``, target ``words``."""

    index: int
    main_point: str
    words: int
    words_given: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


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


def parse_plan(text: str, target_words: int | None = None) -> list[PlanStep]:
    """Steps from a plan reply.

    Args:
        text: the model's plan.
        target_words: the whole piece's length; steps without a word count share what the others
            leave of it (kept to 200-1,000 each). Without a target they get 500 each.

    Returns:
        PlanStep list in order (indices renumbered 1..n).

    Raises:
        LwError: no recognisable step, or more than 50 steps.
    """
    found: list[dict] = []
    for raw in (text or "").splitlines():
        line = _clean(raw)
        if not line:
            continue
        m = _STEP.match(line)
        if m is None:
            # A count on its own line belongs to the step above it.
            c = _COUNT.match(line)
            if found and found[-1]["words"] is None and c and c.end() > 0:
                found[-1]["words"] = _number(c.group("c") or c.group("c2"))
            continue
        rest = line[m.end():]
        p = _POINT.search(rest)
        rest = rest[p.end():] if p else re.sub(r"^\s*[-–—:：.)、]*\s*", "", rest)
        words = None
        counts = list(_COUNT.finditer(rest))
        if counts:
            c = counts[-1]
            words = _number(c.group("c") or c.group("c2"))
            rest = rest[:c.start()]
        found.append({"main_point": rest.strip(" -–—:：|"), "words": words})
    if not found:
        raise LwError("no plan step found: expected lines like 'Paragraph 1 - Main Point: ... - "
                      f"Word Count: 400 words'. The reply began: {(text or '')[:200]!r}")
    if len(found) > MAX_STEPS:
        raise LwError(f"the plan has {len(found)} steps; plans over {MAX_STEPS} are rejected "
                      "(too many steps break the write loop, as in the paper's data pipeline).")
    return _fill_counts(found, target_words)


def _number(text: str) -> int:
    return int(re.sub(r"[,，]", "", text))


def _fill_counts(found: list[dict], target_words: int | None) -> list[PlanStep]:
    missing = [f for f in found if not f["words"]]
    if missing:
        given = sum(f["words"] for f in found if f["words"])
        # What the given counts leave of the target, shared out, kept to 200-1,000 a paragraph.
        share = (min(MAX_WORDS, max(MIN_WORDS, math.ceil((target_words - given) / len(missing))))
                 if target_words else 500)
    return [PlanStep(i + 1, f["main_point"], f["words"] or share, bool(f["words"]))
            for i, f in enumerate(found)]


def check_plan(steps: list[PlanStep], target_words: int) -> str | None:
    """Why a parsed plan cannot serve the target (None if it can): too few steps to reach the
    target at 1,000 words a paragraph, or only empty main points."""
    need = max(1, math.ceil(target_words / MAX_WORDS))
    if len(steps) < need:
        return f"{len(steps)} step(s) cannot reach {target_words} words (need at least {need})"
    if not any(s.main_point for s in steps):
        return "every main point is empty"
    return None


def scaffold_steps(target_words: int, words_per_step: int = 400) -> list[int]:
    """Word counts for a scaffolded plan: ``target_words`` split into equal paragraphs of about
    ``words_per_step`` words (between 200 and 1,000 each, at most 50 steps)."""
    per = min(MAX_WORDS, max(MIN_WORDS, words_per_step))
    n = min(MAX_STEPS, max(1, round(target_words / per)))
    base = target_words // n
    return [base + (1 if i < target_words - base * n else 0) for i in range(n)]


def infer_target_words(instruction: str, default: int = DEFAULT_TARGET) -> tuple[int, str]:
    """The length an instruction asks for: ("5000-word essay" -> 5000, "写一篇3000字" -> 3000,
    "10k words" -> 10000). Returns (words, "instruction") or (default, "default")."""
    text = instruction.replace("，", ",")
    m = re.search(r"(\d[\d,]*(?:\.\d+)?)\s*([kK])?\s*[- ]?\s*(?:words?\b|字)", text)
    if m:
        value = float(m.group(1).replace(",", "")) * (1000 if m.group(2) else 1)
        if value >= 1:
            return int(value), "instruction"
    m = re.search(r"(\d+(?:\.\d+)?)\s*万字", text)
    if m:
        return int(float(m.group(1)) * 10000), "instruction"
    return default, "default"
