"""The two prompt sets AgentWrite can run: the kit's own and the paper's.

``AgentWriteConfig(prompts="kit")`` (the default) uses the kit's versioned prompt files
(``lw/prompts/agentwrite_<lang>.txt``, English or Chinese after the instruction).
``prompts="official"`` uses the paper's ``agentwrite/prompts/plan.txt`` and ``write.txt``,
fetched and checked by ``lw.official`` (never shipped), filled as the official ``plan.py`` and
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
``plan_note``.
"""

from lw import official, prompts
from lw.agentwrite.plan import PlanStep

SETS = ("kit", "official")


class KitPrompts:
    """The kit's own prompts in one language."""

    kind = "kit"

    def __init__(self, lang: str):
        self.scaffold = prompts.load("agentwrite", lang)  # also the plan and write template

    def versions(self, plan_mode: str = "") -> dict:
        """Which prompt files made a record: {"plan", "write"(, "scaffold")}: version tag."""
        tag = self.scaffold.tag
        return {"plan": tag, "write": tag, **({"scaffold": tag} if plan_mode == "scaffold" else {})}

    def version(self, plan_mode: str = "") -> str:
        return self.scaffold.tag

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
    """The paper's plan and write prompts (``lw.official``), filled as its scripts fill them."""

    kind = "official"

    def __init__(self):
        # The official plan prompt asks for this same line format, in English.
        self.scaffold = prompts.load("agentwrite", "en")

    @staticmethod
    def check() -> None:
        """Fetch or find both files now, so a missing one fails before any model call."""
        official.locate("plan")
        official.locate("write")

    def versions(self, plan_mode: str = "") -> dict:
        out = {"plan": official.version("plan"), "write": official.version("write")}
        if plan_mode == "scaffold":
            out["scaffold"] = self.scaffold.tag
        return out

    def version(self, plan_mode: str = "") -> str:
        v = self.versions(plan_mode)
        return "+".join([v["plan"], v["write"]] + ([f"scaffold:{v['scaffold']}"]
                                                   if "scaffold" in v else []))

    def plan(self, item: dict) -> str:
        return official.render("plan", INST=item["prompt"])

    def write(self, item: dict, steps: list[PlanStep], plan_raw: str, paragraphs: list[str],
              replies: list[str], k: int, parallel: bool) -> str:
        """Paragraph ``k``'s prompt (0-based), filled as the module docstring says."""
        text = "" if parallel else "\n\n".join(replies[:k]).strip()
        return official.render("write", INST=item["prompt"], PLAN=official_plan(plan_raw),
                               TEXT=text, STEP=(steps[k].source or steps[k].main_point).strip())


def official_plan(plan_raw: str) -> str:
    """The plan as the official ``write.py`` passes it: stripped, ``"\\n\\n"`` -> ``"\\n"``."""
    return plan_raw.strip().replace("\n\n", "\n")


def prompt_set(kind: str, lang: str):
    """The prompt set ``kind`` ("kit" or "official") for an item in ``lang``."""
    return OfficialPrompts() if kind == "official" else KitPrompts(lang)
