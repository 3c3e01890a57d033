"""AgentWrite step I for ``AgentWriter``: the free-form plan, and the scaffolds that stand in for
it when a model cannot write one.

``plan_mode="auto"`` asks for a free-form plan and scaffolds one where the reply is unusable;
``"free"``/``"scaffold"``/``"scaffold_chat"`` force a way. The scaffold splits the target into
equal paragraphs (``scaffold_steps``) and asks the model for each line's main point only, line
after line, each request seeing the lines so far, in one of two ways chosen by
``model.capabilities.continues_prefix``:

- ``"scaffold"``: the plan prompt with the assistant reply prefilled as ``Paragraph i - Main
  Point:``, continued to the end of the line (local backends, vLLM, servers that continue a
  prefix);
- ``"scaffold_chat"``: a short chat turn of its own per line (``lw/prompts/agentwrite_chat_*``),
  the reply read leniently (``cleanup.chat_point``): every backend can do this, llama.cpp's server
  and hosted APIs included.

The record's ``plan_mode`` names the way that ran and ``plan_note`` why. All items go through
one ``model.stream``: an item's next scaffold line is asked the moment its previous one is
stored, and every finished reply is stored as it arrives (a plan, an unusable free plan as
``<id>/free@<attempt>``, each scaffold line as ``<id>/<plan_mode>@<attempt>/<i>``), so a rerun
after a kill asks only what was in flight. A plan that failed is asked again by
``run(retry_failed=True)`` as attempt n+1, with fresh seeds (``AgentWriteConfig.generation``'s
``attempt``), since the same seed would give the same failure. A plan request that got no
answer (a server outage) is no failure: nothing is stored and a plain rerun asks it again.
"""

from dataclasses import dataclass, field

from lw.agentwrite.cleanup import chat_point, is_repeat, main_point
from lw.agentwrite.outline import check_plan, parse_plan, scaffold_steps, unread_counts_note
from lw.errors import LwError
from lw.llm.base import Request
from lw.llm.failures import failure_kind

PREFIX_LINE_TOKENS = 64  # the rest of one plan line
CHAT_LINE_TOKENS = 96  # a one-sentence main point, with room for a preamble line before it


@dataclass
class _Scaffold:
    """One item's scaffold in progress."""

    kind: str  # "scaffold" (prefix continuation) or "scaffold_chat"
    counts: list  # words per line
    lines: list = field(default_factory=list)
    blanks: list = field(default_factory=list)  # lines whose main point stayed empty
    stats: dict = field(default_factory=lambda: {"step": "plan", "prompt_tokens": 0,
                                                 "completion_tokens": 0, "seconds": 0.0,
                                                 "calls": 0})
    first: object = None  # line i's first answer while it is asked again


class PlanStage:
    """Step I of ``AgentWriter`` (a mixin: it uses the writer's model, config, store, ``_fail``,
    ``_prompts``, ``_plan_prompt`` and ``_save_plan``)."""

    def _plan(self, states: list) -> None:
        """Give each state a plan (stored) or a failure (stored, saying what to do)."""
        first = []
        for s in states:
            tried = self.store.get(f"{s.item['id']}/free@{s.attempt}")
            if self.config.plan_mode in ("scaffold", "scaffold_chat"):
                first += self._start_scaffold(s)
            elif tried is not None:  # found unusable before a kill: straight to the scaffold
                s.plan_note = tried["note"]
                first += self._start_scaffold(s)
            else:
                first.append(Request((s, 0, 0), self._plan_prompt(s),
                                     self.config.generation(self.config.plan_max_new_tokens,
                                                            s.attempt),
                                     name=f"{s.item['id']}/plan"))
        if first:
            self.model.stream(first, self._planned, errors="return")

    def _planned(self, request, out) -> list:
        """``stream``'s callback: store what finished; return what the item needs next."""
        s, i, retry = request.key
        if i == 0:
            return self._free_plan(s, out)
        return self._line(s, i, retry, out)

    def _free_plan(self, s, out) -> list:
        if out.finish_reason == "error":
            self._fail(s, "plan", out.error, failure_kind(out))
            return []
        steps, problem = self._read_plan(s, out)
        if problem is None:
            note = unread_counts_note(steps, s.item["length"])
            self._save_plan(s, steps, out.text, "free", note, step_stats("plan", out))
            return []
        if self.config.plan_mode != "auto":
            self._fail(s, "plan", f"{problem}. plan_mode='auto' scaffolds a plan for a model "
                                  "that cannot write one.")
            return []
        s.plan_note = f"free-form plan unusable ({problem[:300]}); scaffolded"
        self.store.add({"key": f"{s.item['id']}/free@{s.attempt}", "id": s.item["id"],
                        "attempt": s.attempt, "plan_raw": out.text, "note": s.plan_note,
                        "stats": step_stats("plan", out)})
        return self._start_scaffold(s)

    def _read_plan(self, s, out):
        """(steps, None) for a usable free-form plan, else (None, why not)."""
        try:
            steps = parse_plan(out.text, s.item["length"])
            problem = check_plan(steps, s.item["length"])
        except LwError as exc:
            steps, problem = None, str(exc)
        if problem is not None and out.finish_reason == "length":
            problem += (f" (the reply stopped at plan_max_new_tokens="
                        f"{self.config.plan_max_new_tokens}; a plan this long needs more)")
        return steps, problem

    def _scaffold_kind(self) -> str:
        if self.config.plan_mode == "scaffold_chat":
            return "scaffold_chat"
        return "scaffold" if self.model.capabilities.continues_prefix else "scaffold_chat"

    def _start_scaffold(self, s) -> list:
        """Begin (or resume from its stored lines) the item's scaffold: the next line's request,
        or none when every line was stored before a kill (the plan is saved now)."""
        sc = _Scaffold(self._scaffold_kind(),
                       scaffold_steps(s.item["length"], self.config.scaffold_words_per_step))
        while (rec := self.store.get(self._line_key(s, sc, len(sc.lines) + 1))):
            sc.lines.append(rec["line"])
            _add_stats(sc.stats, rec["stats"])
            if rec["blank"]:
                sc.blanks.append(len(sc.lines))
        s.scaffold = sc
        if len(sc.lines) == len(sc.counts):
            self._finish_scaffold(s)
            return []
        return [self._line_request(s, len(sc.lines) + 1, 0)]

    def _line_key(self, s, sc, i: int) -> str:
        return f"{s.item['id']}/{sc.kind}@{s.attempt}/{i}"

    def _line_request(self, s, i: int, retry: int) -> Request:
        """Ask plan line ``i`` of ``s``. Attempt a's scaffold draws with seeds 2a and 2a+1 (its
        re-asks): never the seeds of an attempt that failed."""
        sc, cfg = s.scaffold, self.config
        seed = 2 * s.attempt + retry
        name = f"{s.item['id']}/plan{i}"
        if sc.kind == "scaffold":
            prefix = "\n".join(sc.lines + [self._prompts(s).scaffold.render("scaffold_line",
                                                                            step=i)])
            return Request((s, i, retry), self._plan_prompt(s),
                           cfg.generation(PREFIX_LINE_TOKENS, seed, stop=("\n",)), prefix, name)
        question = self._prompts(s).chat_line(s.item, sc.lines, i, len(sc.counts),
                                              sc.counts[i - 1])
        return Request((s, i, retry), question, cfg.generation(CHAT_LINE_TOKENS, seed),
                       name=name)

    def _point(self, s, out) -> str:
        if out is None or out.finish_reason == "error":
            return ""
        return main_point(out.text) if s.scaffold.kind == "scaffold" else chat_point(out.text)

    def _line(self, s, i: int, retry: int, out) -> list:
        """Line ``i`` answered: a point that is empty or repeats a line above (weak models
        copy) is asked once more with another seed; then the line is stored and the next
        one asked."""
        sc = s.scaffold
        if s.error is not None:
            return []
        if retry == 0:
            if out.finish_reason == "error":
                self._fail(s, "plan", f"scaffold line {i}: {out.error}", failure_kind(out))
                return []
            point = self._point(s, out)
            if not point or is_repeat(point, sc.lines):
                sc.first = out
                return [self._line_request(s, i, 1)]
            calls = [out]
        else:
            first, sc.first = sc.first, None
            calls = [first, out]
            point = self._point(s, out)
            if not point:  # the second ask gave nothing usable: keep the first answer
                out, point = first, self._point(s, first)
        line = self._prompts(s).scaffold.render("plan_line", step=i, main_point=point or "...",
                                                words=sc.counts[i - 1])
        stats = _sum_stats(calls)
        self.store.add({"key": self._line_key(s, sc, i), "id": s.item["id"],
                        "attempt": s.attempt, "index": i, "line": line, "raw": out.text,
                        "blank": not point, "stats": stats})
        sc.lines.append(line)
        _add_stats(sc.stats, stats)
        if not point:
            sc.blanks.append(i)
        if i < len(sc.counts):
            return [self._line_request(s, i + 1, 0)]
        self._finish_scaffold(s)
        return []

    def _finish_scaffold(self, s) -> None:
        sc = s.scaffold
        raw = "\n".join(sc.lines)
        steps = parse_plan(raw, s.item["length"])
        if len(steps) != len(sc.lines):
            raise LwError(f"internal: the scaffold of {s.item['id']!r} wrote {len(sc.lines)} "
                          f"lines but {len(steps)} parse as steps; please report this.")
        tmpl = self._prompts(s).scaffold
        notes = [s.plan_note]
        if sc.kind == "scaffold_chat":
            why = ("plan_mode='scaffold_chat'" if self.config.plan_mode == "scaffold_chat" else
                   f"{self.model.spec} cannot continue an assistant prefix")
            notes.append(f"main points asked in chat turns ({why})")
        if self.config.prompts == "official" and sc.kind == "scaffold":
            notes.append(f"scaffold lines from the kit's {tmpl.tag} under the official plan "
                         "prompt")
        elif self.config.prompts == "official":
            notes.append(f"scaffold lines asked with the kit's {self._prompts(s).chat.tag} in "
                         f"{tmpl.tag}'s line format, not the official plan prompt")
        if sc.blanks:
            notes.append(f"no main point read for step(s) {', '.join(map(str, sc.blanks))} "
                         "after a second ask: '...' stands there (the writer follows the plan "
                         "around it)")
        self._save_plan(s, steps, raw, sc.kind, "; ".join(filter(None, notes)), sc.stats)


def step_stats(step, out) -> dict:
    """What a record keeps of one call: its step, tokens, seconds, finish and retries, and the
    budget the context left where it lowered the paragraph's (``capped``)."""
    return {"step": step, "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens, "seconds": round(out.seconds, 3),
            "finish_reason": out.finish_reason, "retries": out.extra.get("retries", 0),
            **({"capped": out.extra["capped"]} if out.extra.get("capped") else {})}


def _sum_stats(outs) -> dict:
    return {"prompt_tokens": sum(o.prompt_tokens for o in outs),
            "completion_tokens": sum(o.completion_tokens for o in outs),
            "seconds": round(sum(o.seconds for o in outs), 3), "calls": len(outs)}


def _add_stats(total: dict, part: dict) -> None:
    for k in ("prompt_tokens", "completion_tokens", "seconds", "calls"):
        total[k] += part[k]
