"""The baseline AgentWrite is compared with: each instruction answered in one call.

    records = write_direct(model, instructions, "runs/small/direct.jsonl", max_new_tokens=4096)

Each answer is stored the moment it finishes (through ``model.stream``: a server's connections
and a local backend's batch rows stay busy, and a kill loses only the requests in flight); a
rerun with the same path asks only for the items not stored.

Failures follow ``lw.llm.failures``: an item whose request got no answer (a server outage) is
returned failed with ``pending`` True and not stored, so a plain rerun asks it again; one the
backend refused is stored as failed, with advice, and asked again only with
``retry_failed=True``.
"""


from lw import text
from lw.agentwrite.config import make_items
from lw.llm.base import ChatModel, Request
from lw.llm.failures import REQUEST, TRANSPORT, failure_kind, stored_kind, warn_undone
from lw.records import Answer
from lw.store import ResultStore

# What a refused request needs before it can succeed (a rerun as it is fails the same way).
REQUEST_ADVICE = ("the backend refused the request itself, so asking again unchanged fails the "
                  "same way: shorten the instruction, lower max_new_tokens or serve the model "
                  "with a longer context; write_direct(..., retry_failed=True) asks again once "
                  "it can be taken")


def write_direct(model: ChatModel, instructions, path, max_new_tokens: int,
                 temperature: float = 0.5, seed: int | None = 0, progress: bool = True,
                 retry_failed: bool = False, **settings) -> list[dict]:
    """The baseline: each instruction answered in one call (resumable, keyed by item id).

    Args:
        model: any lw chat model.
        instructions: as ``make_items`` takes them (strings or dicts with ``prompt``).
        path: the JSONL results file (created, or resumed: stored items are not asked again).
        max_new_tokens, temperature, seed, settings: the generation settings
            (``lw.llm.GenerationConfig`` fields); each request is named by its item id, so a
            local backend samples an item the same way however the work was split.
        progress: show a progress bar.
        retry_failed: ask again the items stored as failed (without it they are returned as
            stored, with a warning).

    Returns:
        One ``lw.records.Answer`` dict per instruction, in order (``status`` "done" or "failed",
        with ``error``; ``pending`` True where the server gave no answer and nothing was
        stored).
    """
    items = make_items(instructions)
    store = ResultStore(path, key="id")
    cfg = model.config.updated(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                               **settings)

    def asked(item) -> bool:
        rec = store.get(item["id"])
        # An outage stored as a failure by older versions is asked again like a pending item.
        return rec is None or (rec.get("status") != "done"
                               and (retry_failed or stored_kind(rec) == TRANSPORT))

    todo = [Request(item, item["prompt"], cfg, name=item["id"]) for item in items if asked(item)]
    kept = [i for i in items if i["id"] in store and store.get(i["id"]).get("status") != "done"
            and not asked(i)]
    pending: dict = {}  # id -> record of an item the server gave no answer for

    def on_done(request, out):
        record = {**request.key, "status": "failed" if out.error else "done",
                  "error": out.error, "mode": "direct", "response": out.text,
                  "words": text.count_words(out.text),
                  "repetition": round(text.repetition(out.text), 3),
                  "completion_tokens": out.completion_tokens, "seconds": out.seconds,
                  "finish_reason": out.finish_reason, "capped": out.extra.get("capped"),
                  "model": model.info()}
        if out.error:
            kind = failure_kind(out)
            if kind == TRANSPORT:  # no verdict on the item: keep it out of the store
                pending[request.key["id"]] = {**record, "pending": True}
                return
            record.update(error=f"{out.error} ({REQUEST_ADVICE})" if kind == REQUEST
                          else out.error, error_kind=kind)
        store.add(record, replace=request.key["id"] in store)

    if todo:
        model.stream(todo, on_done, progress=progress, errors="return", desc="direct")
    asked_ids = {r.key["id"] for r in todo}
    failed = [i for i in items if i["id"] in asked_ids and i["id"] not in pending
              and store.get(i["id"])["status"] != "done"]
    warn_undone("write_direct", len(items), model.spec, [p["error"] for p in pending.values()],
                [store.get(i["id"])["error"] for i in failed],
                [store.get(i["id"]).get("error") for i in kept],
                "write_direct(..., retry_failed=True)")
    return [Answer.from_dict(pending.get(i["id"]) or store.get(i["id"])).to_dict()
            for i in items]
