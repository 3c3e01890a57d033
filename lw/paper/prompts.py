"""The paper's own prompts, as data: its judge prompt and AgentWrite's plan and write prompts.

They are fetched, never shipped: each file comes from the official repository at a pinned
commit and is checked by sha256, through ``lw.paper.fetch`` like the benchmark prompts.

    template = lw.paper.prompts.text("judge")            # the paper's judge prompt
    prompt = lw.paper.prompts.render("judge", INST=request, RESPONSE=answer)

``render`` fills the ``$NAME$`` placeholders in the order the official scripts do, with
``str.replace`` one after another (``eval_quality.py``: ``$INST$`` then ``$RESPONSE$``), so a
request that itself contains ``$RESPONSE$`` is filled exactly as the paper's script fills it.

The pinned commits are those at which the files were read for this kit (2026-11-26): the judge
prompt never changed in the repository's history; the plan and write prompts are their latest
versions, both ending with the "ongoing work" sentence.
"""

from dataclasses import dataclass

from lw.errors import LwError
from lw.paper.fetch import Pinned
from lw.paper.fetch import locate as _locate


@dataclass(frozen=True)
class OfficialFile(Pinned):
    """One official prompt file: a pinned file and its placeholders, in the order the official
    script fills them."""

    fields: tuple[str, ...] = ()


FILES = {
    "judge": OfficialFile("evaluation/judge.txt", "ca6ccd4dec16696d1b8c449b12901c88d4cbf442",
                          "2c423ce88a0eb6a61482f427997a3c03c4bc11fe861102895dcac45926ae1d57",
                          ("INST", "RESPONSE")),
    "plan": OfficialFile("agentwrite/prompts/plan.txt", "6090a273d6a6a4fdaf3579113f7bae43a0587a29",
                         "736ef8fe41620f525c2beb8ed7272d79d448e398db13679c09a6ba3800b89718",
                         ("INST",)),
    "write": OfficialFile("agentwrite/prompts/write.txt",
                          "3fcfdff43deceb49f7936c6bf25ad88d61df0bfa",
                          "468c47ca954a4dcd4295642ee036383f3fb741560b2fa707a6039f10be0c3c9a",
                          ("INST", "PLAN", "TEXT", "STEP")),
}


def version(name: str) -> str:
    """What results record for an official prompt: ``official:<file>@<commit[:7]>``."""
    f = _file(name)
    return f"official:{f.filename}@{f.commit[:7]}"


def locate(name: str, download: bool = True):
    """The verified local path of official prompt ``name`` (see ``lw.paper.fetch``)."""
    return _locate(_file(name), f"official {name} prompt", download)


def text(name: str) -> str:
    """The official prompt's text, verified."""
    return locate(name).read_text(encoding="utf-8")


def render(name: str, **values: str) -> str:
    """The official prompt with its ``$NAME$`` placeholders filled (official order, see above)."""
    f = _file(name)
    missing = [k for k in f.fields if k not in values]
    unknown = sorted(set(values) - set(f.fields))
    if missing or unknown:
        raise LwError(f"the official {name} prompt takes {', '.join(f.fields)}; missing "
                      f"{missing or 'none'}, unknown {unknown or 'none'}.")
    out = text(name)
    for key in f.fields:
        out = out.replace(f"${key}$", values[key])
    return out


def _file(name: str) -> OfficialFile:
    if name not in FILES:
        raise LwError(f"unknown official prompt {name!r}; the kit knows {', '.join(FILES)}.")
    return FILES[name]
