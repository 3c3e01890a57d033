"""The baseline AgentWrite is compared with: each instruction answered in one call.

    records = write_direct(model, instructions, "runs/small/direct.jsonl", max_new_tokens=4096)

The answers come from the kit's one generation runner (``lw.generation.predict``), with its rule
for failures: each answer is stored the moment it finishes, a failed item is returned (status
"failed", its error, advice by kind) but never stored, and a rerun with the same path asks only
for what is not stored. An item a server outage left unanswered is marked ``pending``.
"""

from lw import records
from lw.agentwrite.config import make_items
from lw.generation import predict
from lw.llm.base import ChatModel
from lw.llm.failures import TRANSPORT, stored_kind
from lw.records import Answer


def write_direct(model: ChatModel, instructions, path, max_new_tokens: int,
                 temperature: float = 0.5, seed: int | None = 0, progress: bool = True,
                 **settings) -> list[Answer]:
    """The baseline: each instruction answered in one call (resumable, keyed by item id).

    Args:
        model: any lw chat model.
        instructions: as ``make_items`` takes them (strings or dicts with ``prompt``).
        path: the JSONL results file (created, or resumed: stored items are not asked again).
        max_new_tokens, temperature, seed, settings: generation settings (``predict``'s:
            ``top_p``, ``repetition_penalty``); each request is named by its item id, so a local
            backend samples an item the same way however the work was split.
        progress: show a progress bar.

    Returns:
        One ``lw.records.answer`` dict per instruction, in order, with ``mode`` "direct"
        (``status`` "done" or "failed", with ``error``; ``pending`` True where the server gave
        no answer).
    """
    rows = [{"id": i["id"], "prompt": i["prompt"], "length": i["length"],
             "length_source": i.get("length_source")} for i in make_items(instructions)]
    preds = predict(model, rows, path, max_new_tokens=max_new_tokens, temperature=temperature,
                    seed=seed, progress=progress, **settings)
    out = []
    for p in preds:
        record = {**p, "mode": "direct"}
        if p.get("status") != "done":
            record["pending"] = stored_kind(p) == TRANSPORT
        out.append(records.answer(record))
    return out
