"""Training conversations from files, saved datasets or the hub, and mixing them.

    convs = load("runs/small/data/longwriter-kit.jsonl")     # [{"messages": [...]}, ...]
    convs = load("hub:THUDM/LongWriter-6k")                  # online, through `datasets`
    mixed = mix(convs, load("hub:HuggingFaceTB/smol-smoltalk", limit=2000), ratio=0.5)
"""

import json
import random
from pathlib import Path

from lw import records
from lw.errors import LwError
from lw.store import jsonl_lines


def load(source, limit: int | None = None) -> list[dict]:
    """Conversations as ``{"messages": [...]}`` from a JSONL file, a folder written by
    ``datasets.save_to_disk``, or ``hub:<dataset id>`` (its ``train`` split). Rows holding
    ``prompt``/``response`` (or ``instruction``/``output``) instead of messages are converted."""
    source = str(source)
    if source.startswith("hub:"):
        from datasets import load_dataset

        try:
            rows = load_dataset(source[4:], split="train")
        except Exception as exc:  # offline, unknown id, gated
            raise LwError(f"cannot load {source[4:]} from the hub ({type(exc).__name__}: {exc}). "
                          "Offline, build the kit's data with lw.data.build (notebook 04) and "
                          "pass its JSONL.") from exc
        rows = rows.select(range(min(limit, len(rows)))) if limit else rows
        return [as_conversation(r, f"{source}[{i}]") for i, r in enumerate(rows)]
    path = Path(source)
    if path.is_dir():
        from datasets import load_from_disk

        rows = list(load_from_disk(str(path)))
    elif path.is_file():
        rows = []
        for i, line in enumerate(jsonl_lines(path)):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LwError(f"{source}:{i + 1} is not valid JSON ({exc}): fix or delete that "
                              "record.") from exc
    else:
        raise LwError(f"training data {source} not found: pass a JSONL of {{'messages': [...]}}, "
                      "a saved datasets folder or hub:<id> (notebook 04 builds the kit's data).")
    rows = rows[:limit] if limit else rows
    return [as_conversation(r, f"{source}:{i + 1}") for i, r in enumerate(rows)]


def as_conversation(row: dict, where: str = "row") -> dict:
    """One row in the ``{"messages": [...]}`` shape, or an error naming the row."""
    if not isinstance(row, dict):
        raise LwError(f"{where}: expected a dict with 'messages' or prompt/response fields, got "
                      f"a {type(row).__name__}.")
    if "messages" in row:
        raw = row["messages"]
        if not isinstance(raw, (list, tuple)) or any(
                not isinstance(m, dict) or "role" not in m or not isinstance(m.get("content"), str)
                for m in raw):
            raise LwError(f"{where}: 'messages' must be a list of {{'role': ..., 'content': "
                          f"str}} dicts, got {raw!r:.200}.")
        messages = [{"role": m["role"], "content": m["content"]} for m in raw]
    else:
        named = records.prompt(row, required=())  # the kit's names (old ones read there)
        prompt = named.get("prompt")
        reply = named.get("response") or named.get("output")  # "output": Alpaca-style sets
        if not prompt or not reply:
            raise LwError(f"{where}: expected 'messages' or prompt/response fields, got "
                          f"{sorted(row)}.")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise LwError(f"{where}: no non-empty assistant message.")
    return {"messages": messages}


def mix(long: list[dict], general: list[dict], ratio: float, seed: int = 0) -> list[dict]:
    """``long`` plus ``round(ratio * len(long))`` general conversations, shuffled."""
    if ratio < 0:
        raise LwError(f"general_ratio must be >= 0, got {ratio}.")
    n = min(len(general), round(ratio * len(long)))
    rng = random.Random(seed)
    out = long + rng.sample(general, n)
    rng.shuffle(out)
    return out


def conversations_for(settings, data=None) -> list[dict]:
    """The conversations a recipe trains on: ``data`` when given (a list of conversations or a
    source), used as it is; else the recipe's ``data.train`` with ``data.general`` mixed in at
    ``data.general_ratio``. Relative paths are taken from the working directory."""
    if isinstance(data, list):
        convs = [as_conversation(r, f"data[{i}]") for i, r in enumerate(data)]
    elif data:
        convs = load(data)
    else:
        if not settings.train:
            raise LwError("no training data: set data.train in the recipe or pass data=.")
        convs = load(settings.train, settings.limit)
        if settings.general and settings.general_ratio > 0:
            convs = mix(convs, load(settings.general), settings.general_ratio)
    if not convs:
        raise LwError("the training data is empty.")
    return convs
