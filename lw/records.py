"""One vocabulary for a record along the whole path: benchmark row, AgentWrite item, prediction,
judgement.

The same thing has the same name at every stage, and it is the name the official LongWriter
files use (``pred.jsonl``): ``prompt`` (the request), ``length`` (the words it asks for;
characters for Chinese), ``response`` (the answer). Records stay plain dicts (they are stored as
JSON lines, shown as pandas tables and written to the official files as they are); the
``TypedDict`` types below name their fields for readers and type checkers, and a row enters the
kit once, through its constructor:

    row = lw.records.prompt({"id": "a", "prompt": "Write 800 words on tides.", "length": 800})
    answer = lw.records.answer({**row, "response": "...", "words": 812})

Benchmark rows (``lw.paper.benchmarks.load``), the kit's instructions (``lw.resources.load``,
``lw.data.instructions``, ``lw.agentwrite.make_items``), generation (``lw.generation.predict``),
AgentWrite records (``lw.agentwrite``) and judgements (``lw.judge.judge``) all come out of these
constructors. Earlier stages of the kit called the fields ``instruction``, ``target_words`` and
``text``: the constructors read those (files written before 2026-11-26 resume), and are the only
place that translates them. Fields a stage adds of its own (AgentWrite's plan and paragraphs,
token counts, a judge's analysis) travel in the same dict.
"""

from typing import TypedDict

from lw.errors import LwError

# Names earlier stages used -> the one name now.
ALIASES = {"instruction": "prompt", "target_words": "length", "text": "response"}


class Prompt(TypedDict, total=False):
    """A request to write for: a benchmark row, an instruction, an AgentWrite item."""

    id: str  # required
    prompt: str  # required
    length: int | None  # words asked for (Chinese: characters); None where not stated
    type: str
    language: str  # "en" or "zh"
    bucket: str  # LongBench-Write's required-length bucket


class Answer(Prompt, total=False):
    """A prompt and the response one model wrote to it (a prediction, an AgentWrite record)."""

    response: str
    words: int
    status: str  # "done", or why not: "failed", "error"
    model: str | dict  # the spec, or lw.generation.predict's model.info()
    finish_reason: str
    completion_tokens: int
    truncated: bool


class Judgement(Answer, total=False):
    """A judge's verdict on one answer (the answer's own fields travel with it): ``scores`` per
    dimension (1-5), or None with ``unscored`` saying why and ``error`` the last reply's fault."""

    scores: dict | None
    unscored: str | None  # None where scored (lw.judge's reasons: no answer, no fit, ...)
    error: str | None
    attempts: int
    protocol: str  # "kit" or "official"


def _read(row, kind: str, required: tuple[str, ...]) -> dict:
    """``row`` as a new dict in today's names (a new name present wins over its old one), or an
    LwError naming the missing required field and the row."""
    if not isinstance(row, dict):
        raise LwError(f"a {kind} record must be a dict, got {type(row).__name__} "
                      f"({row!r:.60}).")
    out = {k: v for k, v in row.items() if k not in ALIASES}
    for old, new in ALIASES.items():
        if old in row and new not in row:
            out[new] = row[old]
    missing = [name for name in required if out.get(name) is None]
    if missing:
        raise LwError(f"a {kind} record needs {', '.join(missing)}; got fields "
                      f"{', '.join(sorted(map(str, row))) or 'none'} (id {row.get('id', '?')!r}).")
    return out


def prompt(row: dict, required: tuple[str, ...] = ("id", "prompt")) -> Prompt:
    """A request row in the kit's names. ``required=()`` translates only (for a caller that
    checks the fields itself, with messages of its own)."""
    return _read(row, "Prompt", required)


# An answer's fields, in the order records are written, with what a record that lacks one
# holds: a reader never meets a missing ``words`` or ``response`` (a failed answer has "").
ANSWER_DEFAULTS = {"id": None, "prompt": None, "length": None, "type": None, "language": None,
                   "bucket": None, "response": "", "words": None, "status": "done",
                   "model": None}


def answer(row: dict, required: tuple[str, ...] = ("id", "prompt")) -> Answer:
    """An answer record in the kit's names: every field of ``ANSWER_DEFAULTS`` present (in that
    order, then the stage's own fields)."""
    out = _read(row, "Answer", required)
    return {**{k: out.get(k, v) for k, v in ANSWER_DEFAULTS.items()}, **out}


def judgement(row: dict) -> Judgement:
    """A judgement in the kit's names: ``scores`` present (None where the judge gave none)."""
    out = _read(row, "Judgement", ("id",))
    out.setdefault("scores", None)
    return out


def answer_usable_words(answer: Answer) -> int | None:
    """``lw.text.usable_words`` of an answer record's response (0 for a failed one; a stored
    ``usable_words`` where the record kept no response; else None: unknown, not 0)."""
    from lw.text import usable_words

    response = answer.get("response")
    if response is not None:
        return usable_words(response)
    if answer.get("status", "done") != "done":
        return 0
    return answer.get("usable_words")


def answer_length_score(answer: Answer) -> float:
    """S_l of one answer record: its ``words`` against its required ``length``."""
    from lw.scoring import length_score

    return length_score(answer["length"], answer.get("words", 0))
