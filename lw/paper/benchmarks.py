"""The paper's benchmark prompts: LongBench-Write (120), its English half (60), LongWrite-Ruler (48).

Files come from the official repository at a pinned commit, checked by sha256, through
``lw.paper.fetch`` (``$LW_DATA_DIR``, then the cache, then a download):

    rows = lw.paper.benchmarks.load("longbench_write_en")  # [{"id", "prompt", "type", "length", ...}]
    rows = lw.paper.benchmarks.subset(rows, n=8, seed=0)   # stratified by length bucket and language
    check_rows(rows, ("id", "prompt", "length"), "my rows")  # LwError naming a bad row
"""

import json
import random

from lw import records, scoring, text
from lw.errors import LwError
from lw.paper.fetch import Pinned, locate
from lw.records import Prompt
from lw.store import jsonl_lines

COMMIT = "3fcfdff43deceb49f7936c6bf25ad88d61df0bfa"
FILES = {  # name -> (the pinned file, its rows)
    "longbench_write": (Pinned("evaluation/longbench_write.jsonl", COMMIT,
                               "1f6e99497cc24d65894d65e014062f398ba946ebdd254b7f8b339e48d3ab5779"),
                        120),
    "longbench_write_en": (Pinned("evaluation/longbench_write_en.jsonl", COMMIT,
                                  "87800927761f340e48899e4df5d47fb7211ad4936a63420dbfa979660414259f"),
                           60),
    "longwrite_ruler": (Pinned("evaluation/longwrite_ruler.jsonl", COMMIT,
                               "a1d4ebf0df0fa1600567691d11c9a52de3037c4a372970ed2e8f52f2889e0a62"),
                        48),
}


def path(name: str, download: bool = True):
    """The verified local file of benchmark ``name`` (see ``lw.paper.fetch``)."""
    if name not in FILES:
        raise LwError(f"unknown benchmark {name!r}; the kit has {', '.join(FILES)}.")
    return locate(FILES[name][0], f"{name} benchmark file", download)


def load(name: str) -> list[Prompt]:
    """Rows of a benchmark, each with ``id`` (file order), ``prompt``, ``type``, ``length``,
    ``language`` ("en"/"zh") and ``bucket`` (LongBench-Write's required-length bucket)."""
    file = path(name)
    n_rows = FILES[name][1]
    rows = []
    for i, line in enumerate(jsonl_lines(file)):
        row = json.loads(line)
        row.update(id=f"{name}-{i:03d}", language=text.language(row["prompt"]),
                   bucket=scoring.bucket(row["length"]))
        rows.append(records.prompt(row))
    if len(rows) != n_rows:
        raise LwError(f"{file} has {len(rows)} rows, expected {n_rows}.")
    return rows


def check_rows(rows, need: tuple[str, ...] = ("id", "prompt", "length"),
               what: str = "rows") -> list[dict]:
    """``rows`` if each is a dict holding the fields in ``need``, else an LwError naming the
    field and the row. Checked too, wherever present: ``prompt`` is non-empty text, ``length``
    a whole number of at least 1 (a target of 0 words cannot be written nor scored: S_l divides
    by it), and no ``id`` appears twice (results are stored by id).

    Args:
        rows: benchmark rows, instructions or predictions, in the kit's vocabulary
            (``lw.records``: ``id``, ``prompt``, ``length``, ``response``).
        need: the fields the caller reads.
        what: how the caller names the rows in the message (e.g. "the rows given to predict").
    """
    if not isinstance(rows, (list, tuple)):
        raise LwError(f"{what} must be a list of dicts, got {type(rows).__name__}.")
    seen = set()
    for i, row in enumerate(rows):
        where = f"{what}[{i}]"
        if not isinstance(row, dict):
            raise LwError(f"{where} is a {type(row).__name__}, not a dict with "
                          f"{', '.join(need)}.")
        where += f" (id {row['id']!r})" if "id" in row else ""
        for name in need:
            if row.get(name) is None:
                old = [k for k, v in records.ALIASES.items() if v == name and k in row]
                hint = (f" It has {old[0]!r}, the old name: lw.records.prompt(row) gives the "
                        "row in the kit's names." if old else
                        " Rows from lw.paper.benchmarks.load and lw.data.instructions have "
                        "id, prompt and length.")
                has = ", ".join(sorted(row)) or "no fields"
                raise LwError(f"{where} has no {name!r} (it has {has}).{hint}")
        if "prompt" in row and (not isinstance(row["prompt"], str) or not row["prompt"].strip()):
            raise LwError(f"{where}: 'prompt' must be non-empty text, got {row['prompt']!r:.80}.")
        if row.get("length") is not None:
            check_length(row["length"], where)
        if "id" in need:
            if str(row["id"]) in seen:
                raise LwError(f"{where}: id {row['id']!r} appears twice; results are stored by "
                              "id, so each row needs its own.")
            seen.add(str(row["id"]))
    return rows


def check_length(length, where: str = "length") -> int:
    """``length`` if it is a whole number of at least 1 (words; characters for Chinese), else
    an LwError saying what to do."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise LwError(f"{where}: 'length' (the words asked for; characters for Chinese) must be "
                      f"a whole number of at least 1, got {length!r}. Drop the row or set the "
                      "length it asks for.")
    return length


def subset(rows: list[Prompt], n: int | None, seed: int = 0, max_length: int | None = None,
           languages: tuple[str, ...] | None = None, min_length: int = 0) -> list[Prompt]:
    """``n`` rows stratified by (bucket, language): strata take turns in a seeded order, so
    every bucket and language appears before any appears twice.

    Args:
        rows: from ``load`` (or any rows with id, prompt and length; their language and bucket
            are then found from the prompt and the length).
        n: how many (None or more than there are: all that pass the filters).
        seed: picks which rows.
        max_length: drop rows asking for more words than this (CPU-sized runs).
        min_length: drop rows asking for fewer words than this (long-output comparisons).
        languages: keep only these languages, e.g. ("en",).
    """
    check_rows(rows, ("id", "prompt", "length"), "the rows given to subset")
    language = {r["id"]: r.get("language") or text.language(r["prompt"]) for r in rows}
    pool = [r for r in rows if (max_length is None or r["length"] <= max_length)
            and r["length"] >= min_length
            and (languages is None or language[r["id"]] in languages)]
    if n is None or n >= len(pool):
        return pool
    rng = random.Random(seed)
    strata: dict[tuple, list] = {}
    for r in rng.sample(pool, len(pool)):
        key = (r.get("bucket") or scoring.bucket(r["length"]), language[r["id"]])
        strata.setdefault(key, []).append(r)
    order = sorted(strata, key=lambda k: (rng.random(), k))
    picked = []
    while len(picked) < n:
        for key in order:
            if strata[key] and len(picked) < n:
                picked.append(strata[key].pop())
    return sorted(picked, key=lambda r: r["id"])
