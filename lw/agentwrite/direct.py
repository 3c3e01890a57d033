"""The baseline AgentWrite is compared with: each instruction answered in one call.

    records = write_direct(model, instructions, "runs/small/direct.jsonl", max_new_tokens=4096)

Each answer is stored the moment it finishes (through ``model.stream``: a server's connections
and a local backend's batch rows stay busy, and a kill loses only the requests in flight); a
rerun with the same path asks only for the items not stored.
"""

from lw import text
from lw.agentwrite.config import make_items
from lw.llm.base import ChatModel, Request
from lw.records import Answer
from lw.store import ResultStore


def write_direct(model: ChatModel, instructions, path, max_new_tokens: int,
                 temperature: float = 0.5, seed: int | None = 0, progress: bool = True,
                 **settings) -> list[dict]:
    """The baseline: each instruction answered in one call (resumable, keyed by item id).

    Args:
        model: any lw chat model.
        instructions: as ``make_items`` takes them (strings or dicts with ``prompt``).
        path: the JSONL results file (created, or resumed: stored items are not asked again).
        max_new_tokens, temperature, seed, settings: the generation settings
            (``lw.llm.GenerationConfig`` fields); each request is named by its item id, so a
            local backend samples an item the same way however the work was split.
        progress: show a progress bar.

    Returns:
        One ``lw.records.Answer`` dict per instruction, in order (``status`` "done" or "failed",
        with ``error``).
    """
    items = make_items(instructions)
    store = ResultStore(path, key="id")
    cfg = model.config.updated(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                               **settings)
    todo = [Request(item, item["prompt"], cfg, name=item["id"]) for item in items
            if item["id"] not in store]

    def on_done(request, out):
        store.add({**request.key, "status": "failed" if out.error else "done",
                   "error": out.error, "mode": "direct", "response": out.text,
                   "words": text.count_words(out.text),
                   "repetition": round(text.repetition(out.text), 3),
                   "completion_tokens": out.completion_tokens, "seconds": out.seconds,
                   "finish_reason": out.finish_reason, "model": model.info()})

    if todo:
        model.stream(todo, on_done, progress=progress, errors="return", desc="direct")
    return [Answer.from_dict(store.get(i["id"])).to_dict() for i in items]
