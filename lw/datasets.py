"""The paper's benchmark prompts: LongBench-Write (120), its English half (60), LongWrite-Ruler (48).

Files come from the official repository at a pinned commit and are checked by sha256:

    rows = lw.datasets.load("longbench_write_en")      # [{"id", "prompt", "type", "length", ...}]
    rows = lw.datasets.subset(rows, n=8, seed=0)        # stratified by length bucket and language
    lw.datasets.check_rows(rows, ("id", "prompt", "length"), "my rows")  # LwError naming a bad row

Where they come from, in order: ``$LW_DATA_DIR`` (a folder holding the files, e.g. an offline
copy), the cache (``data/cache/longwriter/``), else a download from the official repository into
the cache. A file whose checksum does not match is an error, never silently replaced.
"""

import hashlib
import json
import os
import random
import urllib.request
from pathlib import Path

from lw import paths, records, scoring, text
from lw.errors import LwError
from lw.store import jsonl_lines

COMMIT = "3fcfdff43deceb49f7936c6bf25ad88d61df0bfa"
URL = f"https://raw.githubusercontent.com/THUDM/LongWriter/{COMMIT}/evaluation/{{name}}"
FILES = {  # name -> (file, rows, sha256)
    "longbench_write": ("longbench_write.jsonl", 120,
                        "1f6e99497cc24d65894d65e014062f398ba946ebdd254b7f8b339e48d3ab5779"),
    "longbench_write_en": ("longbench_write_en.jsonl", 60,
                           "87800927761f340e48899e4df5d47fb7211ad4936a63420dbfa979660414259f"),
    "longwrite_ruler": ("longwrite_ruler.jsonl", 48,
                        "a1d4ebf0df0fa1600567691d11c9a52de3037c4a372970ed2e8f52f2889e0a62"),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def locate(name: str, download: bool = True) -> Path:
    """The verified local path of benchmark file ``name`` (see the module docstring)."""
    if name not in FILES:
        raise LwError(f"unknown benchmark {name!r}; the kit has {', '.join(FILES)}.")
    filename, _, digest = FILES[name]
    if os.environ.get("LW_DATA_DIR"):
        path = Path(os.environ["LW_DATA_DIR"]).expanduser() / filename
        if not path.exists():
            raise LwError(f"LW_DATA_DIR={os.environ['LW_DATA_DIR']} has no {filename}. Put the "
                          f"file there (from {URL.format(name=filename)}) or unset LW_DATA_DIR "
                          "to let the kit download it.")
        _verify(path, digest)
        return path
    path = paths.cache_dir() / "longwriter" / filename
    if not path.exists():
        if not download:
            raise LwError(f"{filename} is not cached at {path}.")
        _download(filename, path)
    _verify(path, digest)
    return path


def _verify(path: Path, digest: str) -> None:
    actual = sha256(path)
    if actual != digest:
        raise LwError(f"{path} has sha256 {actual[:16]}..., not the pinned {digest[:16]}...: the "
                      f"file is corrupt or a different version. Delete it and fetch it again from "
                      f"{URL.format(name=path.name)}.")


def _download(filename: str, path: Path) -> None:
    url = URL.format(name=filename)
    tmp = path.with_suffix(".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            tmp.write_bytes(resp.read())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LwError(f"could not download {url} ({exc}). Without internet, download the file "
                      f"on another machine into {path.parent}, or set LW_DATA_DIR to a folder "
                      "holding the LongWriter evaluation files.") from exc
    os.replace(tmp, path)


def load(name: str) -> list[dict]:
    """Rows of a benchmark, each with ``id`` (file order), ``prompt``, ``type``, ``length``,
    ``language`` ("en"/"zh") and ``bucket`` (LongBench-Write's required-length bucket)."""
    filename, n_rows, _ = FILES.get(name, (None, None, None))
    rows = []
    for i, line in enumerate(jsonl_lines(locate(name))):
        row = json.loads(line)
        row.update(id=f"{name}-{i:03d}", language=text.language(row["prompt"]),
                   bucket=scoring.bucket(row["length"]))
        rows.append(row)
    if len(rows) != n_rows:
        raise LwError(f"{filename} has {len(rows)} rows, expected {n_rows}.")
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
                hint = (f" It has {old[0]!r}, the old name: lw.records.Prompt.from_dict(row)"
                        ".to_dict() gives the row in the kit's names." if old else
                        " Rows from lw.datasets.load and lw.data.instructions have "
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


def subset(rows: list[dict], n: int | None, seed: int = 0, max_length: int | None = None,
           languages: tuple[str, ...] | None = None, min_length: int = 0) -> list[dict]:
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
