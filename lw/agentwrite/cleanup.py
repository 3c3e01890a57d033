"""Cleaning model text for AgentWrite: plan-line main points (from a continued prefix or a plain
chat reply), repeated points, echoed labels and chatty preambles."""

import re

from lw.agentwrite.outline import parse_plan
from lw.errors import LwError


def is_repeat(completion: str, lines: list[str]) -> bool:
    point = _norm(main_point(completion))
    return bool(point) and any(_norm(main_point(line.split(":", 1)[-1])) == point
                               for line in lines)


def _norm(s: str) -> str:
    return re.sub(r"\W+", " ", s.lower()).strip()


def main_point(completion: str) -> str:
    """The main point from a scaffolded line's completion (a copied word count is cut off)."""
    line = completion.strip().splitlines()[0] if completion.strip() else ""
    try:
        return parse_plan("Paragraph 1 - Main Point: " + line)[0].main_point[:300]
    except LwError:
        return line[:300]


_POINT_LABEL = re.compile(r"(?:main\s*point|主要观点|主要内容)\s*[:：]\s*", re.I)
_QUOTES = " \"'“”‘’「」『』"
_STEP_LABEL = re.compile(r"^(?:\d+\s*[.)、]\s*)?(?:(?:paragraph|section|part|step)\s*\d+|"
                         r"第\s*[0-9一二三四五六七八九十百]+\s*段)?\s*[-–—:：.)、]*\s*", re.I)


def chat_point(reply: str) -> str:
    """The main point from a plain chat reply to the scaffold's question, read leniently: the
    first line with something in it, past a chatty preamble ("Sure! Here is the main point:"),
    with an echoed label ("Paragraph 3 - Main Point:", "Main point:", "第3段 - 主要观点："),
    markup, quotes and a copied word count taken off; "" when nothing is left."""
    for raw in (reply or "").splitlines():
        line = re.sub(r"[*_`#>]+", "", raw).strip()
        if not line or _PREAMBLE.match(line):
            continue
        label = _POINT_LABEL.search(line)
        if label and label.start() <= 40:  # "Paragraph 3 - Main Point: X", "Main point: X"
            line = line[label.end():]
        line = _STEP_LABEL.sub("", line, count=1)  # "1. X", "Paragraph 3: X", "第3段：X"
        point = main_point(line).strip(_QUOTES)
        if point:
            return point
    return ""


_LABEL = re.compile(r"^\W*(?:paragraph\s*\d+|第\s*[0-9一二三四五六七八九十百]+\s*段)\b[^\n]{0,80}?"
                    r"(?:main\s*point|主要观点|word\s*count|字数)?[^\n]*$", re.I)
_PREAMBLE = re.compile(r"^\W*(?:sure|certainly|of course|okay|ok|here(?:'s| is| are))\b.{0,160}:\s*$",
                       re.I)


def strip_label(paragraph: str) -> str:
    """Drop an echoed plan label ("Paragraph 3 - Main Point: ...") or a chatty preamble line
    ("Sure! Here is paragraph 3:") from a paragraph's start, as the paper strips paragraph labels
    from its outputs; subheadings stay."""
    body = paragraph.strip()
    first, _, rest = body.partition("\n")
    if _PREAMBLE.match(first) or (_LABEL.match(first) and (rest.strip() or len(first) < 20)):
        return rest.strip()
    return body
