"""Prompt templates as versioned data files in this folder.

A file ``<family>_<lang>.txt`` starts with ``version: N``, then sections headed ``=== name ===``
whose text uses ``{field}`` placeholders. Lines starting with ``#`` before the first section are
comments. Results record ``template.version`` so a changed prompt never hides in old numbers.

    t = load("agentwrite", "en")
    t.render("plan", instruction="Write ...", target_words=2000)
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lw.errors import LwError

FOLDER = Path(__file__).parent
LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class Template:
    """One family of prompts in one language."""

    name: str
    version: int
    sections: dict

    def render(self, section: str, **fields) -> str:
        try:
            return self.sections[section].format(**fields)
        except KeyError as exc:
            raise LwError(f"prompt {self.name}/{section}: missing section or field {exc}.") from exc

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"


@cache
def load(family: str, lang: str) -> Template:
    """The template ``<family>_<lang>.txt``; ``lang`` is "en" or "zh"."""
    if lang not in LANGUAGES:
        raise LwError(f"no prompts for language {lang!r}: the kit has {', '.join(LANGUAGES)}.")
    path = FOLDER / f"{family}_{lang}.txt"
    if not path.exists():
        raise LwError(f"no prompt file {path.name} in {FOLDER}.")
    text = path.read_text(encoding="utf-8")
    m = re.match(r"version:\s*(\d+)\s*\n", text)
    if not m:
        raise LwError(f"{path.name} must start with 'version: N'.")
    parts = re.split(r"^=== (\w+) ===\n", text, flags=re.M)
    sections = {parts[i]: parts[i + 1].rstrip("\n") for i in range(1, len(parts), 2)}
    return Template(f"{family}_{lang}", int(m.group(1)), sections)
