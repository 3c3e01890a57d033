"""The kit's own data, written for it (no download, no licence question): long-writing
instructions (English, LongBench-Write's seven types) and short general prompts.

The offline source of long-writing instructions: no download, no licence question. Each row is
``{"id", "type", "length", "prompt"}`` with the required length in words, like the benchmark files.

    rows = lw.data.instructions("kit", min_words=2000, n=4, seed=0)   # the one way to ask for them
"""

import json
import random
from pathlib import Path

from lw import records
from lw.errors import LwError
from lw.records import Prompt
from lw.store import jsonl_lines

FILE = Path(__file__).parent / "instructions_en.jsonl"
SHORT_PROMPTS = Path(__file__).parent / "short_prompts_en.jsonl"
VERSION = 2  # bump when the file changes (2: 24 instructions of 500-1,500 words added)


def load(min_words: int = 0, max_words: int | None = None, n: int | None = None,
         seed: int = 0) -> list[Prompt]:
    """Instructions whose required length is in [min_words, max_words]; ``n`` of them picked
    spread across types (round-robin over a seeded shuffle), or all when ``n`` is None. Asking
    for more than there are is an LwError (a run never goes on with fewer than it says)."""
    rows = [records.prompt(json.loads(line)) for line in jsonl_lines(FILE)]
    rows = [r for r in rows if r["length"] >= min_words and
            (max_words is None or r["length"] <= max_words)]
    if n is not None and n > len(rows):
        lengths = sorted({r["length"] for r in rows})
        raise LwError(f"{n} kit instructions asked for, but only {len(rows)} ask for "
                      f"{min_words}-{max_words if max_words is not None else 'any'} words "
                      f"({', '.join(map(str, lengths)) or 'none'}): ask for fewer, or widen the "
                      "word range (MIN_WORDS / MAX_WORDS).")
    if n is None or n == len(rows):
        return rows
    rng = random.Random(seed)
    by_type: dict[str, list] = {}
    for r in rng.sample(rows, len(rows)):
        by_type.setdefault(r["type"], []).append(r)
    picked = []
    while len(picked) < n:
        for group in by_type.values():
            if group and len(picked) < n:
                picked.append(group.pop())
    return sorted(picked, key=lambda r: r["id"])


def short_prompts() -> list[Prompt]:
    """The kit's short general prompts (``{"id", "prompt"}``), for ``lw.data.short_answers``."""
    return [records.prompt(json.loads(line)) for line in jsonl_lines(SHORT_PROMPTS)]
