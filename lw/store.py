"""A resumable JSONL results store: one record per line, keyed by id, flushed as it finishes.

Long runs (generation, AgentWrite, judging) write each finished item at once, so a crash or
Ctrl-C loses at most the item in flight; a rerun opens the same file and skips the done keys.

    store = ResultStore("data/runs/preds.jsonl", key="id")
    for item in items:
        if item["id"] in store:
            continue
        store.add({"id": item["id"], "response": ...})

A torn last line (the process died mid-write) is reported and dropped, never fatal; adding a key
that is already stored raises instead of writing a duplicate.
"""

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from lw.errors import LwError


class ResultStore:
    """Append-only JSONL file of records keyed by ``record[key]``.

    Args:
        path: the JSONL file; its folder is created. An existing file is read and resumed.
        key: the field that identifies a record.
    """

    def __init__(self, path: str | os.PathLike, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, dict] = {}
        self.torn_lines = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        *complete, tail = raw.split(b"\n")  # tail: bytes after the last newline
        for i, line in enumerate(complete):
            if line.strip():
                self._remember(self._parse(line, i + 1))
        if tail.strip():
            try:
                self._remember(self._parse(tail, len(complete) + 1))
            except LwError:
                # A crash cut the last line short: drop it so that item is simply redone.
                self.torn_lines = 1
                warnings.warn(
                    f"{self.path}: dropped a torn last line ({len(tail)} bytes) left by an "
                    "interrupted run; that item will be redone.",
                    stacklevel=3,
                )
                with open(self.path, "r+b") as f:
                    f.truncate(len(raw) - len(tail))

    def _parse(self, line: bytes, lineno: int) -> dict:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LwError(
                f"{self.path}, line {lineno} is not valid JSON ({exc}). The file was edited or "
                "corrupted: fix or delete that line, then rerun."
            ) from exc
        self._check_key(record, where=f"line {lineno}")
        return record

    def _remember(self, record: dict) -> None:
        self._records[str(record[self.key])] = record

    def _check_key(self, record: dict, where: str) -> None:
        if not isinstance(record, dict) or self.key not in record:
            raise LwError(f"{self.path}, {where}: record has no '{self.key}' field: {record!r:.200}")

    def __contains__(self, key) -> bool:
        return str(key) in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self._records.values())

    def get(self, key, default=None):
        return self._records.get(str(key), default)

    def keys(self) -> list[str]:
        return list(self._records)

    def add(self, record: dict, replace: bool = False) -> None:
        """Append ``record`` and flush it to disk; a key already stored is an error, unless
        ``replace``: then the new line supersedes the old one (on loading, a key's last line
        wins), for a failure asked again."""
        self._check_key(record, where="add()")
        k = str(record[self.key])
        if k in self._records and not replace:
            raise LwError(f"{self.path}: '{k}' is already stored; skip done keys with `in store`.")
        line = json.dumps(record, ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as f:
            if f.tell() > 0 and not self._ends_with_newline():
                f.write("\n")
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._records[k] = record

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"


def jsonl_lines(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a JSONL file. Only "\n" ends a line: ``str.splitlines`` also
    splits at U+2028, U+0085 and other separators that JSON keeps raw inside strings (models
    write them), which cut a record in two."""
    text = Path(path).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line.strip()]


def keyed_path(folder: str | os.PathLike, name: str, **identity) -> Path:
    """``folder/<name>-<hash>.jsonl``, the hash taken over ``identity`` (model, settings ...).
    ``model`` and ``judge`` may be spec strings or loaded models (then their load options that
    change outputs, ``ChatModel.load_identity``, count too); a local checkpoint's weights count.

    Notebooks use it so a rerun with the same settings resumes its file, while changed settings
    start a new one instead of mixing results.
    """
    import hashlib

    from lw.llm import weights_version

    for key in ("model", "judge"):
        value = identity.get(key)
        if hasattr(value, "load_identity"):  # a loaded model: its spec, and how it was loaded
            loaded = value.load_identity()
            identity = {**identity, key: value.spec,
                        **({f"{key}_load": loaded} if loaded else {})}
        # a retrained local checkpoint must not reuse old results
        version = weights_version(identity.get(key))
        if version is not None:
            identity = {**identity, f"{key}_weights": version}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return Path(folder) / f"{name}-{digest[:8]}.jsonl"


def answers_digest(records: list[dict]) -> str:
    """A short hash of what a list of answers says (ids and responses): a file of judgements
    keyed by it is never read back for other answers (new samples, a rerun that filled in
    failed items)."""
    import hashlib

    blob = json.dumps([[r.get("id"), r.get("response")] for r in records], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
