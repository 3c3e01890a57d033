"""The baseline AgentWrite is compared with: each instruction answered in one call."""

from lw import text
from lw.agentwrite.writer import make_items
from lw.llm.base import ChatModel
from lw.records import Answer
from lw.store import ResultStore


def write_direct(model: ChatModel, instructions, path, max_new_tokens: int,
                 temperature: float = 0.5, seed: int | None = 0, **settings) -> list[dict]:
    """The baseline: each instruction answered in one call (resumable, keyed by item id)."""
    items = make_items(instructions)
    store = ResultStore(path, key="id")
    todo = [i for i in items if i["id"] not in store]
    if todo:
        outs = model.generate([i["prompt"] for i in todo], max_new_tokens=max_new_tokens,
                              temperature=temperature, seed=seed, errors="return", **settings)
        for item, out in zip(todo, outs, strict=True):
            store.add({**item, "status": "failed" if out.error else "done", "error": out.error,
                       "mode": "direct", "response": out.text, "words": text.count_words(out.text),
                       "repetition": round(text.repetition(out.text), 3),
                       "completion_tokens": out.completion_tokens, "seconds": out.seconds,
                       "finish_reason": out.finish_reason, "model": model.info()})
    return [Answer.from_dict(store.get(i["id"])).to_dict() for i in items]
