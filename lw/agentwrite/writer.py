"""The AgentWrite runner: batched rounds over many items, every step stored as it finishes.

See ``lw.agentwrite`` for the method and usage; this module holds the machinery (settings and
items: ``lw.agentwrite.config``; the prompt sets: ``lw.agentwrite.prompting``).
"""

from dataclasses import asdict, dataclass, field

from lw import prompts, text
from lw.agentwrite.cleanup import strip_label
from lw.agentwrite.config import AgentWriteConfig, make_items
from lw.agentwrite.plan import PlanStep
from lw.agentwrite.planning import PlanStage, step_stats
from lw.agentwrite.prompting import OfficialPrompts, prompt_set
from lw.errors import LwError
from lw.llm.base import ChatModel, Request
from lw.records import Answer
from lw.store import ResultStore


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
    def run(self, instructions, retry_failed: bool = False, progress: bool = True) -> list[dict]:
        """Write every item; returns one record per item, in order (status "done"/"failed").

        Args:
            instructions: strings or dicts (``make_items`` checks them all before any request).
            retry_failed: ask items that failed before again: a failed paragraph from where
                the item stopped, a failed plan as a new attempt with fresh seeds (the same seed
                would give the same unusable plan). Without it a failure stays as stored.
            progress: show a progress bar over paragraphs.
        """
        from tqdm.auto import tqdm

        items = make_items(instructions, self.config.default_target_words)
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
        # Records stored before 2026-11-26 say instruction/target_words/text: read them in
        # today's names (lw.records), so callers see one vocabulary.
        return [Answer.from_dict(s.final).to_dict() if s.final else self._failure(s)
                for s in states]

    def _resume(self, item: dict, retry_failed: bool) -> _State:
        key = item["id"]
        lang = self.config.language or text.language(item["prompt"])
        s = _State(item, lang)
        s.final = self.store.get(f"{key}/final")
        n = self._failures(key)
        if n and not retry_failed:
            s.error = self.store.get(f"{key}/failed{n}")["error"]
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
        return s

    def _failures(self, key: str) -> int:
        """How many failure records an item has (keys <id>/failed1, failed2, ...): key lookups,
        not a scan of the store, so resuming stays linear in the number of items."""
        n = 0
        while f"{key}/failed{n + 1}" in self.store:
            n += 1
        return n

    def _fail(self, s: _State, stage: str, reason: str) -> None:
        s.error = f"{stage}: {reason}"
        n = self._failures(s.item["id"])
        self.store.add({"key": f"{s.item['id']}/failed{n + 1}", "id": s.item["id"],
                        "stage": stage, "error": s.error})

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
                     for k in range(len(s.paragraphs), len(s.steps))]
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
        its first failure."""
        while s.error is None and (out := ready.pop((id(s), len(s.paragraphs)), None)):
            k = len(s.paragraphs)
            if out.finish_reason == "error":
                self._fail(s, f"paragraph {k + 1}", out.error)
                return
            para, stats = strip_label(out.text), step_stats(k + 1, out)
            s.paragraphs.append(para)
            s.replies.append(out.text)
            s.stats.append(stats)
            # The reply as written is kept where cleaning changed it: the official write prompt
            # shows the model its own earlier replies.
            self.store.add({"key": f"{s.item['id']}/p{k + 1}", "id": s.item["id"],
                            "index": k + 1, "text": para, "stats": stats,
                            **({"raw": out.text} if out.text != para else {})})

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
            "seconds": round(sum(st["seconds"] for st in s.stats), 2)}
        self.store.add(s.final)

    def _failure(self, s: _State) -> dict:
        return {**s.item, "status": "failed", "error": s.error, "language": s.lang,
                "mode": self.config.mode, "plan_mode": s.plan_mode, "plan_note": s.plan_note,
                "paragraphs": s.paragraphs,
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
