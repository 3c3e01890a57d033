"""The one generation runner: every stage that asks a model for answers to rows asks here.

    preds = predict(model, rows, "runs/small/lbw-preds.jsonl", max_new_tokens=2048)

LongWrite-Ruler (``lw.ruler``), LongBench-Write (``lw.longbench``), the data stage's short
answers (``lw.data``) and the preference samples DPO learns from all go through ``predict``.
Predictions are batched and resumable (keyed by row id), and each answer is stored the moment
it ends (a kill loses only the requests in flight): each record holds the response, its word
count, repetition, tokens, finish reason (``truncated`` when the token limit cut it), ``capped``
(the budget the model's context left, where it was below ``max_new_tokens``), seconds,
model and settings. The rule for failures: a failed item is returned with its error but not
stored, so a rerun retries it; the warning that counts them says what to do by kind
(``lw.llm.failures``): after a server outage, rerun with the same path; after a refused request
(400/422), change what the error names (a shorter prompt, a lower ``max_new_tokens``, a model
with a longer context) first. Rows missing ``id`` or ``prompt``, or asking for fewer than 1
word, are refused with an LwError naming the field and the row.
"""

import warnings

from lw import text
from lw.llm import context as lw_context
from lw.llm.failures import REQUEST, REQUEST_ADVICE, TRANSPORT, TRANSPORT_ADVICE, stored_kind
from lw.paper.benchmarks import check_rows
from lw.records import Answer, Prompt
from lw.store import ResultStore

# Stored in each record as versions["evaluate"] (the name the records on disk already carry).
VERSION = 1


def predict(model, rows: list[Prompt], path, max_new_tokens: int, temperature: float = 0.5,
            top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int | None = 0,
            progress: bool = True) -> list[Answer]:
    """Generate an answer to every row (the paper samples at temperature 0.5), storing each
    answer the moment it ends, so a crash or kill loses only the requests in flight.

    Args:
        model: any ``lw.llm`` chat model; its ``stream`` keeps the batch (local models) or the
            connections (servers) busy and hands over each reply as it ends.
        rows: dicts with ``id`` and ``prompt`` (``length`` where present must be at least 1),
            e.g. from ``lw.paper.benchmarks.load``; a row missing one is an LwError naming it.
        path: the JSONL store; rerunning with the same path generates only what is missing.
        max_new_tokens, temperature, top_p, repetition_penalty, seed: generation settings.
            ``seed`` with the row's id seeds its sampling on local backends, so an answer does
            not depend on which rows ran beside it.

    Returns:
        One record per row, in order. A failed request (``status`` "failed", with its
        ``error``) is returned, not stored, so a rerun retries it; a warning counts them.
    """
    from lw.llm.base import Request
    from lw.progress import bar as tqdm

    check_rows(rows, ("id", "prompt"), "the rows given to predict")
    store = ResultStore(path, key="id")
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                    repetition_penalty=repetition_penalty, seed=seed)
    config = model.config.updated(**settings)  # bad settings fail here, before any request
    # Shortest prompts first: local backends batch rows of similar length.
    todo = sorted((r for r in rows if r["id"] not in store), key=lambda r: len(r["prompt"]))
    # What the model's context gives each request, said before any is sent; a prompt that
    # fills the context is refused here, since the server could only reject it.
    context = lw_context.plan(model, todo, max_new_tokens)
    context.warn()
    failed = {r["id"]: {**r, "status": "failed", "error": context.refused[r["id"]],
                        "error_kind": REQUEST} for r in todo if r["id"] in context.refused}
    todo = [r for r in todo if r["id"] not in context.refused]
    by_id = {str(r["id"]): r for r in todo}
    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc=f"predict {model.spec}",
              unit="prompt", disable=not progress) as bar:
        def on_done(request, out):
            row = by_id[request.key]
            bar.update(1)
            if out.finish_reason == "error":
                failed[row["id"]] = {**row, "status": "failed", "error": out.error}
                return
            store.add({**row, "status": "done", "response": out.text,
                       "words": text.count_words(out.text),
                       "repetition": round(text.repetition(out.text), 3),
                       "prompt_tokens": out.prompt_tokens,
                       "completion_tokens": out.completion_tokens,
                       "finish_reason": out.finish_reason,
                       "truncated": out.finish_reason == "length",
                       # the budget the context left this reply, where below max_new_tokens
                       "capped": out.extra.get("capped"),
                       "seconds": round(out.seconds, 2), "model": model.info(),
                       "settings": settings, "versions": {"evaluate": VERSION}})

        model.stream([Request(str(r["id"]), r["prompt"], config, name=str(r["id"]))
                      for r in todo], on_done, errors="return")
    if failed:
        # Advice by kind (lw.llm.failures): an outage mends itself, a refused request does not.
        kinds = {pid: stored_kind(rec) for pid, rec in failed.items()}
        parts = []
        for kind, what, advice in ((TRANSPORT, "got no answer", TRANSPORT_ADVICE),
                                   (REQUEST, "were refused", REQUEST_ADVICE)):
            ids = [pid for pid, k in kinds.items() if k == kind]
            if ids:
                parts.append(f"{len(ids)} {what} ({kind}; last error: "
                             f"{str(failed[ids[-1]]['error'])[:300]}): {advice}")
        warnings.warn(f"predict: {len(failed)} of {len(rows)} requests to {model.spec} failed; "
                      f"none is stored. {'; '.join(parts)}.", stacklevel=2)
    return [store.get(r["id"]) or failed[r["id"]] for r in rows]
