"""AgentWrite as a model under evaluation: benchmark rows written by AgentWrite, returned in
``lw.generation.predict``'s record shape, so LongBench-Write scores them like any model's
(``lw.longbench.run_model("agentwrite:<spec>", ...)``).
"""

from lw.agentwrite.writer import AgentWriter
from lw.generation import VERSION
from lw.paper.benchmarks import check_rows
from lw.records import Answer, Prompt


def predict_agentwrite(model, rows: list[Prompt], path, config=None) -> list[Answer]:
    """Predictions written by AgentWrite instead of one call: each row's prompt and required
    length go to ``lw.agentwrite.AgentWriter``; the records come back in ``predict``'s shape
    (``truncated`` is never set: AgentWrite has no overall budget)."""
    check_rows(rows, ("id", "prompt", "length"), "the rows given to predict_agentwrite")
    items = [{"id": r["id"], "prompt": r["prompt"], "length": r["length"]} for r in rows]
    records = AgentWriter(model, path, config).run(items)
    out = []
    for row, rec in zip(rows, records, strict=True):
        if rec["status"] != "done":  # pending: a server outage, asked again by a rerun
            out.append({**row, "status": "failed", "error": rec.get("error"),
                        "pending": bool(rec.get("pending"))})
            continue
        out.append({**row, "status": "done", "response": rec["response"], "words": rec["words"],
                    "repetition": rec["repetition"], "completion_tokens": rec["completion_tokens"],
                    "finish_reason": "stop", "truncated": False, "seconds": rec["seconds"],
                    "model": {**rec["model"], "method": "agentwrite"},
                    "settings": rec["settings"], "versions": {"evaluate": VERSION,
                                                              "prompt": rec["prompt_version"]}})
    return out


METHODS = ("direct", "sequential", "parallel")


def write(model, instructions, folder, method: str, progress: bool = True, **settings):
    """Notebook 02's three methods through one door, each resumable in a file under ``folder``
    named by the method, the model and every setting (so the same settings resume and new ones
    start a new file): ``"direct"`` (one call each, ``write_direct``; ``settings`` are its
    generation settings) or AgentWrite ``"sequential"`` / ``"parallel"`` (``settings`` are
    ``AgentWriteConfig`` fields). Returns the records, in order."""
    from lw.agentwrite.config import AgentWriteConfig
    from lw.agentwrite.direct import write_direct
    from lw.errors import LwError
    from lw.store import keyed_path

    if method not in METHODS:
        raise LwError(f"method must be one of {METHODS}, got {method!r}.")
    if method == "direct":
        path = keyed_path(folder, "direct", model=model, **settings)
        return write_direct(model, instructions, path, progress=progress, **settings)
    config = AgentWriteConfig(mode=method, **settings)
    path = keyed_path(folder, method, model=model, **vars(config))
    return AgentWriter(model, path, config).run(instructions, progress=progress)


def run_settings(profile, prompts: str = "kit", seed: int = 0, **overrides) -> tuple[dict, dict]:
    """Notebook 02's and ``python -m lw.agentwrite``'s settings, built in one place: (AgentWrite's
    ``AgentWriteConfig`` fields, the direct baseline's generation settings) for ``write``.

    ``profile`` is ``lw.profiles.get("02", size)``; ``overrides`` (``temperature``,
    ``direct_temperature``, ``repetition_penalty``, ``words_per_step``, ``retry_short``,
    ``plan_mode``, ``direct_max_new_tokens``) replace its values where not None."""
    from lw.errors import LwError

    known = {"temperature", "direct_temperature", "repetition_penalty", "words_per_step",
             "retry_short", "plan_mode", "direct_max_new_tokens"}
    if set(overrides) - known:
        raise LwError(f"unknown AgentWrite setting(s) {sorted(set(overrides) - known)}: "
                      f"use {sorted(known)}.")
    v = {name: getattr(profile, name) if overrides.get(name) is None else overrides[name]
         for name in known}
    agentwrite = dict(prompts=prompts, temperature=v["temperature"],
                      repetition_penalty=v["repetition_penalty"], seed=seed,
                      plan_mode=v["plan_mode"], scaffold_words_per_step=v["words_per_step"],
                      tokens_per_word=profile.tokens_per_word,
                      plan_max_new_tokens=profile.plan_max_new_tokens,
                      retry_short=v["retry_short"])
    direct = dict(max_new_tokens=v["direct_max_new_tokens"], temperature=v["direct_temperature"],
                  repetition_penalty=v["repetition_penalty"], seed=seed)
    return agentwrite, direct
