"""The AgentWrite runner: batched rounds over many items, every step stored as it finishes.

See ``lw.agentwrite`` for the method and usage; this module holds the machinery (settings and
items: ``lw.agentwrite.config``; the prompt sets: ``lw.agentwrite.prompting``).

Failures follow ``lw.llm.failures``: a request that got no answer (a server outage, its retries
spent) leaves its item pending, with nothing stored for it, so a plain rerun continues it; a
request the backend refused, or a plan that cannot be used, is stored as the item's failure
(``<id>/failed<n>``) with advice, and only ``run(..., retry_failed=True)`` asks it again.
"""

import warnings
from dataclasses import asdict, dataclass, field

from lw import prompts, records, text
from lw.agentwrite.cleanup import strip_label
from lw.agentwrite.config import AgentWriteConfig, make_items
from lw.agentwrite.outline import PlanStep
from lw.agentwrite.planning import PlanStage, step_stats
from lw.agentwrite.prompting import OfficialPrompts, prompt_set
from lw.errors import LwError
from lw.llm.base import ChatModel, Request, byte_bound
from lw.llm.context import TOKENS_PER_WORD
from lw.llm.failures import REQUEST, TRANSPORT, failure_kind, stored_kind, warn_undone
from lw.records import Answer, Prompt
from lw.store import ResultStore


def context_warning(model, items: list[Prompt], mode: str) -> list:
    """Warn, before any request, about items whose last paragraph's prompt would not fit the
    model's context: in sequential mode it holds the plan and all the text written so far
    (about the item's length in words x ``TOKENS_PER_WORD``). Returns the ids warned about."""
    context = model.capabilities.context
    if context is None or mode != "sequential":
        return []
    over = [it["id"] for it in items
            if it["length"] * TOKENS_PER_WORD + byte_bound([{"role": "user",
                                                            "content": it["prompt"]}]) > context]
    if over:
        warnings.warn(f"AgentWrite: {len(over)} of {len(items)} items ask for more text than the "
                      f"{context}-token context of {model.spec} can hold in their last "
                      f"paragraph's prompt (the text so far at ~{TOKENS_PER_WORD} tokens a word): "
                      f"{', '.join(map(str, over[:5]))}. Their late paragraphs will be refused or "
                      "capped: use a model with a longer context (lw.llm.context."
                      "long_context_options), or mode='parallel'.", stacklevel=3)
    return over


@dataclass
class _State:
    item: dict
    lang: str
    steps: list | None = None
    plan_raw: str = ""
    plan_mode: str = ""
    plan_note: str = ""
    paragraphs: list = field(default_factory=list)
    replies: list = field(default_factory=list)  # paragraphs as the model wrote them
    stats: list = field(default_factory=list)
    error: str | None = None
    final: dict | None = None
    attempt: int = 0  # plans that failed before: a retry asks with fresh seeds
    scaffold: object = None  # lw.agentwrite.planning's scaffold in progress
    pending: bool = False  # this run got no answer for it (an outage): nothing stored
    stored_failure: bool = False  # a failure an earlier run stored, returned as it is
    later: dict = field(default_factory=dict)  # parallel: paragraph index -> record stored
    # while an earlier paragraph was missing


# What a refused request needs before it can succeed (a rerun as it is fails the same way).
REQUEST_ADVICE = ("the backend refused the request itself, so asking again unchanged fails the "
                  "same way: shorten the instruction, lower the token budgets (AgentWriteConfig "
                  "max_new_tokens, plan_max_new_tokens; a new path) or serve the model with a "
                  "longer context; run(..., retry_failed=True) asks again once it can be taken")


class AgentWriter(PlanStage):
    """Runs AgentWrite for many items on one model, storing every step in a JSONL file.

    Args:
        model: any lw chat model.
        path: the results file (created, or resumed if it exists).
        config: AgentWriteConfig; a resumed file must have been made with the same settings.
    """

    def __init__(self, model: ChatModel, path, config: AgentWriteConfig | None = None):
        self.model = model
        self.config = config or AgentWriteConfig()
        if self.config.prompts == "official":
            OfficialPrompts.check()
            versions = OfficialPrompts().versions("scaffold_chat")
        else:
            versions = {lang: prompts.load("agentwrite", lang).tag for lang in prompts.LANGUAGES}
            versions.update({f"chat_{lang}": prompts.load("agentwrite_chat", lang).tag
                             for lang in prompts.LANGUAGES})
        self.store = ResultStore(path, key="key")
        self.header = {"config": asdict(self.config), "model": model.spec, "prompts": versions}
        old = self.store.get("__config__")
        if old is None:
            self.store.add({"key": "__config__", **self.header})
        elif _header(old, self.header) != self.header:
            raise LwError(f"{path} was made with other settings or another model ({old['model']}"
                          f", {old['config']}); resume with those, or write to a new path.")

    # -- driving ---------------------------------------------------------------------------
    def run(self, instructions, retry_failed: bool = False, progress: bool = True) -> list[Answer]:
        """Write every item; returns one record per item, in order (status "done"/"failed").

        An item whose request got no answer (server down, timeouts, 5xx or 429 past the
        backend's retries) is returned failed with ``pending`` True and nothing stored for it: a
        plain rerun with the same path continues it where it stopped, and a warning says so.
        Other failures (a request the backend refused, an unusable plan) are stored; a plain
        rerun returns them without asking and warns that they are stored failures.

        Args:
            instructions: strings or dicts (``make_items`` checks them all before any request).
            retry_failed: ask items that failed before again: a failed paragraph from where
                the item stopped, a failed plan as a new attempt with fresh seeds (the same seed
                would give the same unusable plan). Without it a failure stays as stored.
            progress: show a progress bar over paragraphs.
        """
        from lw.progress import bar as tqdm

        items = make_items(instructions, self.config.default_length)
        context_warning(self.model, items, self.config.mode)
        states = [self._resume(item, retry_failed) for item in items]
        todo = [s for s in states if s.final is None and s.error is None]
        self._plan([s for s in todo if s.steps is None])
        total = sum(len(s.steps) for s in todo if s.steps)
        with tqdm(total=total, initial=sum(len(s.paragraphs) for s in todo),
                  desc=f"AgentWrite {self.config.mode}", unit="para", disable=not progress) as bar:
            self._write([s for s in todo if s.error is None and s.steps
                         and len(s.paragraphs) < len(s.steps)], bar)
        for s in todo:
            if s.error is None and s.steps:
                self._finish(s)
        self._warn(states, todo)
        # Records stored before 2026-11-26 say instruction/target_words/text: read them in
        # today's names (lw.records), so callers see one vocabulary.
        return [records.answer(s.final) if s.final else self._failure(s)
                for s in states]

    def _resume(self, item: dict, retry_failed: bool) -> _State:
        key = item["id"]
        lang = self.config.language or text.language(item["prompt"])
        s = _State(item, lang)
        s.final = self.store.get(f"{key}/final")
        n = self._failures(key)
        last = self.store.get(f"{key}/failed{n}") if n else None
        # An outage that older versions stored as a failure is continued like a pending item.
        if s.final is None and last is not None and not retry_failed \
                and stored_kind(last) != TRANSPORT:
            s.error, s.stored_failure = last["error"], True
        s.attempt = sum(_stage(self.store.get(f"{key}/failed{k}")) == "plan"
                        for k in range(1, n + 1))
        plan = self.store.get(f"{key}/plan")
        if plan:
            s.steps = [PlanStep.from_dict(d) for d in plan["plan"]]
            s.plan_raw, s.plan_mode, s.plan_note = plan["plan_raw"], plan["plan_mode"], plan["note"]
            s.stats.append(plan["stats"])
            k = 1
            while (p := self.store.get(f"{key}/p{k}")) is not None:
                s.paragraphs.append(p["text"])
                s.replies.append(p.get("raw", p["text"]))
                s.stats.append(p["stats"])
                k += 1
            # Parallel paragraphs finished after an earlier one failed were stored too.
            s.later = {j: p for j in range(k + 1, len(s.steps) + 1)
                       if (p := self.store.get(f"{key}/p{j}")) is not None}
        return s

    def _failures(self, key: str) -> int:
        """How many failure records an item has (keys <id>/failed1, failed2, ...): key lookups,
        not a scan of the store, so resuming stays linear in the number of items."""
        n = 0
        while f"{key}/failed{n + 1}" in self.store:
            n += 1
        return n

    def _fail(self, s: _State, stage: str, reason: str, kind: str | None = None) -> None:
        """End the item's work for this run. ``kind`` is the backend's failure kind
        (``lw.llm.failures``; None for a reply that came back unusable): a transport failure
        only marks the item pending, anything else is stored as its failure."""
        s.error = f"{stage}: {reason}"
        if kind == TRANSPORT:
            s.pending = True
            return
        if kind == REQUEST:
            s.error += f" ({REQUEST_ADVICE})"
        n = self._failures(s.item["id"])
        self.store.add({"key": f"{s.item['id']}/failed{n + 1}", "id": s.item["id"],
                        "stage": stage, "error": s.error, **({"error_kind": kind} if kind else {})})

    def _warn(self, states: list, todo: list) -> None:
        """Say what a run left undone and what brings it in: pending items (rerun), failures
        this run stored and failures returned as an earlier run stored them (retry_failed)."""
        n, spec = len(states), self.model.spec
        pending = [s for s in states if s.pending]
        failed = [s for s in todo if s.error is not None and not s.pending]
        stored = [s for s in states if s.stored_failure]
        warn_undone("AgentWrite", n, spec, [s.error for s in pending],
                    [s.error for s in failed], [s.error for s in stored],
                    "run(..., retry_failed=True) (a failed plan with fresh seeds)", stacklevel=4)

    # -- step I: plans (lw.agentwrite.planning) -------------------------------------------
    def _prompts(self, s: _State):
        """The item's prompt set (``lw.agentwrite.prompting``)."""
        return prompt_set(self.config.prompts, s.lang)

    def _plan_prompt(self, s: _State) -> str:
        return self._prompts(s).plan(s.item)

    def _save_plan(self, s, steps, raw, mode, note, stats) -> None:
        s.steps, s.plan_raw, s.plan_mode, s.plan_note = steps, raw, mode, note
        s.stats.append(stats)
        self.store.add({"key": f"{s.item['id']}/plan", "id": s.item["id"], "plan_raw": raw,
                        "plan": [st.to_dict() for st in steps], "plan_mode": mode, "note": note,
                        "stats": stats})

    # -- step II: paragraphs ---------------------------------------------------------------
    def write_prompt(self, s: _State, k: int | None = None) -> str:
        """The prompt for paragraph ``k`` (0-based; default the next) of ``s``: instruction,
        plan, the text so far (sequential) or none (parallel), from the configured prompts."""
        k = len(s.paragraphs) if k is None else k
        return self._prompts(s).write(s.item, s.steps, s.plan_raw, s.paragraphs, s.replies, k,
                                      parallel=self.config.mode == "parallel")

    def _write(self, active: list[_State], bar) -> None:
        """Write every remaining paragraph through ``model.stream``. Sequential mode asks for an
        item's next paragraph the moment its previous one is stored, so a local backend keeps
        its batch full and a server its connections busy; parallel mode asks for all at once.
        Paragraphs are stored in order as they finish (a later one waits in memory for an
        earlier one). With ``retry_short``, a paragraph that ends far below its word count is
        asked again with another seed and the longer answer kept."""
        cfg = self.config
        if cfg.mode == "parallel":
            first = [self._request(s, k) for s in active
                     for k in range(len(s.paragraphs), len(s.steps)) if k + 1 not in s.later]
        else:
            first = [self._request(s, len(s.paragraphs)) for s in active]
        best: dict = {}  # (id(state), k) -> the answer kept so far
        ready: dict = {}  # finished answers waiting for an earlier paragraph of their item

        def on_done(request, out):
            s, k, attempt = request.key
            key = (id(s), k)
            if attempt == 0 or key not in best:
                best[key] = out
            else:
                out.extra["retries"] = attempt
                if out.finish_reason != "error" and (text.count_words(out.text) >
                                                     text.count_words(best[key].text)):
                    best[key] = out
                else:
                    best[key].extra["retries"] = attempt
            if attempt < cfg.retry_short and self._too_short(s, k, best[key]):
                return [self._request(s, k, attempt + 1)]
            ready[key] = best.pop(key)
            before = len(s.paragraphs)
            self._store_ready(s, ready)
            bar.update(len(s.paragraphs) - before)
            if (cfg.mode == "sequential" and s.error is None and len(s.paragraphs) > before
                    and len(s.paragraphs) < len(s.steps)):
                return [self._request(s, len(s.paragraphs))]
            return []

        self.model.stream(first, on_done, errors="return")

    def _request(self, s: _State, k: int, attempt: int = 0) -> Request:
        return Request((s, k, attempt), self.write_prompt(s, k),
                       self.config.generation(self.config.budget(s.steps[k].words), attempt),
                       name=f"{s.item['id']}/p{k + 1}")

    def _store_ready(self, s: _State, ready: dict) -> None:
        """Store the item's finished paragraphs that follow on from what is stored, stopping at
        its first failure (parallel mode: then those after it are stored as they finish, since
        none depends on another, and a rerun asks only the missing ones)."""
        while s.error is None:
            k = len(s.paragraphs)
            if (rec := s.later.pop(k + 1, None)) is not None:  # stored by an earlier run
                s.paragraphs.append(rec["text"])
                s.replies.append(rec.get("raw", rec["text"]))
                s.stats.append(rec["stats"])
                continue
            if (out := ready.pop((id(s), k), None)) is None:
                return
            if out.finish_reason == "error":
                self._fail(s, f"paragraph {k + 1}", out.error, failure_kind(out))
                break
            para, stats = self._store_paragraph(s, k, out)
            s.paragraphs.append(para)
            s.replies.append(out.text)
            s.stats.append(stats)
        if self.config.mode == "parallel":
            for key in [key for key in ready if key[0] == id(s)]:
                if ready[key].finish_reason != "error":
                    self._store_paragraph(s, key[1], ready.pop(key))

    def _store_paragraph(self, s: _State, k: int, out) -> tuple[str, dict]:
        """Store paragraph ``k`` (0-based) of ``s`` from reply ``out``: (its text, its stats)."""
        para, stats = strip_label(out.text), step_stats(k + 1, out)
        # The reply as written is kept where cleaning changed it: the official write prompt
        # shows the model its own earlier replies.
        self.store.add({"key": f"{s.item['id']}/p{k + 1}", "id": s.item["id"],
                        "index": k + 1, "text": para, "stats": stats,
                        **({"raw": out.text} if out.text != para else {})})
        return para, stats

    def _too_short(self, s: _State, k: int, out) -> bool:
        return (out.finish_reason == "stop" and
                text.count_words(out.text) < self.config.short_ratio * s.steps[k].words)

    def _finish(self, s: _State) -> None:
        body = "\n\n".join(p for p in s.paragraphs if p)
        s.final = {
            "key": f"{s.item['id']}/final", **s.item, "status": "done", "language": s.lang,
            "mode": self.config.mode, "plan_mode": s.plan_mode, "plan_note": s.plan_note,
            "plan_raw": s.plan_raw, "plan": [st.to_dict() for st in s.steps],
            "paragraphs": s.paragraphs, "response": body, "words": text.count_words(body),
            "repetition": round(text.repetition(body), 3),
            "model": self.model.info(), **self._prompt_fields(s),
            "settings": asdict(self.config), "steps": s.stats,
            "completion_tokens": sum(st["completion_tokens"] for st in s.stats),
            "capped": sum(1 for st in s.stats if st.get("capped")) or None,  # paragraphs
            "seconds": round(sum(st["seconds"] for st in s.stats), 2)}
        self.store.add(s.final)

    def _failure(self, s: _State) -> dict:
        return {**s.item, "status": "failed", "error": s.error, "pending": s.pending,
                "language": s.lang, "mode": self.config.mode, "plan_mode": s.plan_mode,
                "plan_note": s.plan_note, "paragraphs": s.paragraphs,
                "response": "", "words": 0, "model": self.model.info(), **self._prompt_fields(s)}

    def _prompt_fields(self, s: _State) -> dict:
        """Which prompts ran: the set, one version string and each file's version."""
        ps = self._prompts(s)
        return {"prompts": ps.kind, "prompt_version": ps.version(s.plan_mode),
                "prompt_versions": ps.versions(s.plan_mode)}


def _header(old: dict, new: dict) -> dict:
    """A stored header in today's shape: files made before ``prompts`` existed ran the kit's;
    files made before the chat scaffold existed never ran it, so they take today's
    ``agentwrite_chat`` versions (the other prompt versions must still match)."""
    out = {k: old.get(k) for k in new}
    if isinstance(out.get("config"), dict):
        out["config"] = {"prompts": "kit", **out["config"]}
    if isinstance(out.get("prompts"), dict) and isinstance(new.get("prompts"), dict):
        added = {k: v for k, v in new["prompts"].items() if k.startswith(("chat_", "scaffold_"))}
        out["prompts"] = {**added, **out["prompts"]}
    return out


def _stage(failure: dict) -> str:
    """The stage a stored failure happened at ("plan", "paragraph 2"); records stored before
    ``stage`` existed begin their error with it."""
    return failure.get("stage") or failure["error"].split(":", 1)[0]
