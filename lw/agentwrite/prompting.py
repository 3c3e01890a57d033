"""The two prompt sets AgentWrite can run: the kit's own and the paper's.

``AgentWriteConfig(prompts="kit")`` (the default) uses the kit's versioned prompt files
(``lw/prompts/agentwrite_<lang>.txt``, English or Chinese after the instruction).
``prompts="official"`` uses the paper's ``agentwrite/prompts/plan.txt`` and ``write.txt``,
fetched and checked by ``lw.paper.prompts`` (never shipped), filled as the official ``plan.py`` and
``write.py`` fill them:

- plan: ``$INST$`` = the instruction (the official prompt has no target-length field; the
  instruction carries it).
- write: ``$INST$`` = the instruction; ``$PLAN$`` = the plan reply with surrounding whitespace
  stripped and each blank-line pair collapsed (``"\\n\\n"`` -> ``"\\n"``); ``$TEXT$`` = the replies
  to the earlier steps, as the model wrote them (labels not stripped), joined by blank lines and
  stripped (empty for the first step); ``$STEP$`` = the plan line of this step, stripped.

Differences from the official scripts, on purpose: the official ``write.py`` writes one paragraph
per line of the plan, so a preamble line ("Here is the plan:") becomes a step of its own; the kit
writes one paragraph per step ``parse_plan`` recognises and passes that step's line(s) as
``$STEP$`` (the same thing for a plan in the format the prompt asks for). The official pipeline
has no parallel mode: ``mode="parallel"`` gives every step an empty ``$TEXT$``, as the first step
gets. The official prompts are English only, whatever the instruction's language.

Scaffolded plans (``plan_mode``) with the official prompts keep the kit's scaffold: the
conversation is the official plan prompt and the kit writes each line's opening in the format that
prompt asks for (``Paragraph i - Main Point:``, from ``agentwrite_en``); the record lists that
template as ``prompt_versions["scaffold"]`` and in ``prompt_version``, and says so in
``plan_note``. The scaffold through plain chat turns (``plan_mode="scaffold_chat"``, for backends
that cannot continue a prefix) asks each line's main point with the kit's
``agentwrite_chat_<lang>`` (English under the official prompts), listed as
``prompt_versions["scaffold_chat"]``.
"""

from lw import prompts
from lw.agentwrite.outline import PlanStep
from lw.paper import prompts as paper_prompts

SETS = ("kit", "official")


class KitPrompts:
    """The kit's own prompts in one language."""

    kind = "kit"

    def __init__(self, lang: str):
        self.scaffold = prompts.load("agentwrite", lang)  # also the plan and write template
        self.chat = prompts.load("agentwrite_chat", lang)

    def versions(self, plan_mode: str = "") -> dict:
        """Which prompt files made a record: {"plan", "write"(, "scaffold"(, "scaffold_chat"))}:
        version tag."""
        tag = self.scaffold.tag
        return {"plan": tag, "write": tag, **_scaffold_versions(self, plan_mode)}

    def version(self, plan_mode: str = "") -> str:
        if plan_mode == "scaffold_chat":
            return f"{self.scaffold.tag}+{self.chat.tag}"
        return self.scaffold.tag

    def chat_line(self, item: dict, lines: list[str], step: int, n_steps: int,
                  words: int) -> str:
        return chat_line(self.chat, item, lines, step, n_steps, words)

    def plan(self, item: dict) -> str:
        return self.scaffold.render("plan", instruction=item["prompt"],
                                    target_words=item["length"])

    def write(self, item: dict, steps: list[PlanStep], plan_raw: str, paragraphs: list[str],
              replies: list[str], k: int, parallel: bool) -> str:
        """Paragraph ``k``'s prompt (0-based): instruction, the plan as the kit's lines, the text
        so far (cleaned paragraphs) or, in parallel mode, a note that the others are written
        apart."""
        t = self.scaffold
        lines = [t.render("plan_line", step=st.index, main_point=st.main_point, words=st.words)
                 for st in steps]
        if parallel:
            context = t.render("parallel")
        elif k:
            context = t.render("so_far", text="\n\n".join(paragraphs[:k]))
        else:
            context = t.render("so_far_empty")
        return t.render("write", instruction=item["prompt"], plan="\n".join(lines),
                        context=context, step=k + 1, n_steps=len(steps), step_line=lines[k],
                        words=steps[k].words)


class OfficialPrompts:
    """The paper's plan and write prompts (``lw.paper.prompts``), filled as its scripts fill them."""

    kind = "official"

    def __init__(self):
        # The official plan prompt asks for this same line format, in English.
        self.scaffold = prompts.load("agentwrite", "en")
        self.chat = prompts.load("agentwrite_chat", "en")

    @staticmethod
    def check() -> None:
        """Fetch or find both files now, so a missing one fails before any model call."""
        paper_prompts.locate("plan")
        paper_prompts.locate("write")

    def versions(self, plan_mode: str = "") -> dict:
        return {"plan": paper_prompts.version("plan"), "write": paper_prompts.version("write"),
                **_scaffold_versions(self, plan_mode)}

    def version(self, plan_mode: str = "") -> str:
        v = self.versions(plan_mode)
        return "+".join([v["plan"], v["write"]] + [f"{k}:{v[k]}" for k in ("scaffold",
                                                                          "scaffold_chat")
                                                   if k in v])

    def chat_line(self, item: dict, lines: list[str], step: int, n_steps: int,
                  words: int) -> str:
        return chat_line(self.chat, item, lines, step, n_steps, words)

    def plan(self, item: dict) -> str:
        return paper_prompts.render("plan", INST=item["prompt"])

    def write(self, item: dict, steps: list[PlanStep], plan_raw: str, paragraphs: list[str],
              replies: list[str], k: int, parallel: bool) -> str:
        """Paragraph ``k``'s prompt (0-based), filled as the module docstring says."""
        text = "" if parallel else "\n\n".join(replies[:k]).strip()
        return paper_prompts.render("write", INST=item["prompt"], PLAN=official_plan(plan_raw),
                               TEXT=text, STEP=(steps[k].source or steps[k].main_point).strip())


def _scaffold_versions(ps, plan_mode: str) -> dict:
    """The scaffold's template versions for a record: the plan-line format for both scaffolds,
    and the chat scaffold's question for ``scaffold_chat``."""
    if plan_mode == "scaffold":
        return {"scaffold": ps.scaffold.tag}
    if plan_mode == "scaffold_chat":
        return {"scaffold": ps.scaffold.tag, "scaffold_chat": ps.chat.tag}
    return {}


def chat_line(chat, item: dict, lines: list[str], step: int, n_steps: int, words: int) -> str:
    """The chat scaffold's question for plan line ``step`` (1-based): the instruction, the lines
    planned so far, and the paragraph's place and length."""
    so_far = (chat.render("so_far", plan="\n".join(lines)) if lines
              else chat.render("so_far_empty"))
    return chat.render("line", instruction=item["prompt"], target_words=item["length"],
                       n_steps=n_steps, so_far=so_far, step=step, words=words)


def official_plan(plan_raw: str) -> str:
    """The plan as the official ``write.py`` passes it: stripped, ``"\\n\\n"`` -> ``"\\n"``."""
    return plan_raw.strip().replace("\n\n", "\n")


def prompt_set(kind: str, lang: str):
    """The prompt set ``kind`` ("kit" or "official") for an item in ``lang``."""
    return OfficialPrompts() if kind == "official" else KitPrompts(lang)
