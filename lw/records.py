"""One vocabulary for a record along the whole path: benchmark row, AgentWrite item, prediction,
judgement.

The same thing has the same name at every stage, and it is the name the official LongWriter
files use (``pred.jsonl``): ``prompt`` (the request), ``length`` (the words it asks for;
characters for Chinese), ``response`` (the answer). Earlier stages of the kit called them
``instruction``, ``target_words`` and ``text``; ``from_dict`` still reads those (files written
before 2026-11-26 resume), ``to_dict`` writes only the new names.

    row = Prompt.from_dict({"id": "a", "prompt": "Write 800 words on tides.", "length": 800})
    answer = Answer(**vars(row), response="...", words=812, model="smollm2-135m")
    store.add(answer.to_dict())
    Answer.from_dict(store["a"]).response

Fields a stage adds of its own (AgentWrite's plan and paragraphs, token counts, a judge's
analysis) travel in ``extra`` and come back flat in ``to_dict``.
"""

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from lw.errors import LwError

# Names earlier stages used -> the one name now.
ALIASES = {"instruction": "prompt", "target_words": "length", "text": "response"}


def renamed(row: dict) -> dict:
    """``row`` with the old names of ``ALIASES`` read as the new ones (a new name present wins):
    the one place rows that are not yet typed records are translated."""
    out = {k: v for k, v in row.items() if k not in ALIASES}
    for old, new in ALIASES.items():
        if old in row and new not in row:
            out[new] = row[old]
    return out


@dataclass
class _Record:
    """to_dict/from_dict for the record types below."""

    aliases: ClassVar[dict] = {}

    @classmethod
    def from_dict(cls, data: dict) -> "_Record":
        """Read a flat dict: old names mapped to the new ones (a new name present wins), fields
        this type does not know kept in ``extra``; a missing required field is an LwError."""
        if not isinstance(data, dict):
            raise LwError(f"a {cls.__name__} record must be a dict, got {type(data).__name__}.")
        known = {f.name for f in fields(cls)} - {"extra"}
        values, extra = {}, dict(data.get("extra") or {})
        for key, value in data.items():
            if key == "extra":
                continue
            name = cls.aliases.get(key, key)
            if name in known:
                if name != key and name in data:
                    continue  # both spellings present: the new one wins
                values[name] = value
            else:
                extra[key] = value
        missing = [f.name for f in fields(cls) if f.name not in values and f.name != "extra"
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise LwError(f"a {cls.__name__} record needs {', '.join(missing)}; got fields "
                          f"{', '.join(sorted(data)) or 'none'} (id {data.get('id', '?')!r}).")
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """Flat dict: every field under its one name, then ``extra``'s keys."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    def get(self, name: str, default=None):
        """A field or an extra value by name (old names accepted)."""
        name = ALIASES.get(name, name)
        if name in {f.name for f in fields(self)}:
            return getattr(self, name)
        return self.extra.get(name, default)


@dataclass
class Prompt(_Record):
    """A request to write for: a benchmark row, an instruction, an AgentWrite item."""

    aliases: ClassVar[dict] = ALIASES
    id: str
    prompt: str
    length: int | None = None  # words asked for (Chinese: characters); None where not stated
    type: str | None = None
    language: str | None = None
    bucket: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Answer(Prompt):
    """A prompt and the response one model wrote to it (a prediction, an AgentWrite record)."""

    response: str = ""
    words: int | None = None
    status: str = "done"  # "done", or why not: "failed", "error"
    model: str | None = None


@dataclass
class Judgement(_Record):
    """A judge's verdict on one answer: ``scores`` per dimension (1-5), or None with a reason."""

    id: str
    scores: dict | None = None
    status: str = "scored"
    reason: str | None = None
    extra: dict = field(default_factory=dict)


def answer_usable_words(answer: dict) -> int | None:
    """``lw.text.usable_words`` of an answer record's response (0 for a failed one; a stored
    ``usable_words`` where the record kept no response; else None: unknown, not 0)."""
    from lw.text import usable_words

    response = renamed(answer).get("response")
    if response is not None:
        return usable_words(response)
    if answer.get("status", "done") != "done":
        return 0
    return answer.get("usable_words")


def answer_length_score(answer: dict) -> float:
    """S_l of one answer record: its ``words`` against its required ``length``."""
    from lw.scoring import length_score

    return length_score(answer["length"], answer.get("words", 0))

