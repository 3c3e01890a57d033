"""AgentWrite: plan a long piece as paragraphs, then write them one call at a time.

The paper's method (arXiv 2408.07055, section 3): step I asks the model for a plan (one line per
paragraph with its main point and word count); step II writes the paragraphs in order, each call
seeing the instruction, the plan and all text so far (``mode="sequential"``), or only the
instruction and the plan (``mode="parallel"``, the paper's +Parallel ablation).

    writer = AgentWriter(model, "runs/small/agentwrite.jsonl", AgentWriteConfig(mode="sequential"))
    records = writer.run(["Write a 3000-word history of the printing press."])
    records[0]["response"], records[0]["words"], records[0]["plan"]

All items advance together through ``model.stream``: an item's next paragraph is asked for the
moment its previous one is stored, so a local backend keeps its batch rows busy and a server its
connections (other backends work in rounds). Every plan and paragraph is stored as it finishes;
rerunning with the same path resumes, an item a server outage left pending included
(``lw.llm.failures``), and ``run(..., retry_failed=True)`` asks stored failed items again (a
failed plan with fresh seeds). Weak models that cannot write the plan format get a
scaffolded plan (``plan_mode``, ``lw.agentwrite.planning``): the target is split into equal
paragraphs and the model gives each line's main point, by continuing ``Paragraph i - Main
Point:`` where the backend continues an assistant prefix (``plan_mode="scaffold"`` in the
record), else in a short chat turn of its own per line (``"scaffold_chat"``: llama.cpp's server,
hosted APIs). Plans may have up to ``plan_step_limit(target)`` steps: the paper's 50, more for
targets over 25,000 words.

Two prompt sets: the kit's own, versioned (``prompts="kit"``, the default, English or Chinese after
the instruction) and the paper's plan and write prompts, fetched and checksum-verified by
``lw.paper.prompts`` (``AgentWriteConfig(prompts="official")``; ``lw.agentwrite.prompting`` says how
they are filled). Every record names what ran: ``prompts`` ("kit"/"official"),
``prompt_version`` (one string) and ``prompt_versions`` (per file); the set is part of the
settings, so the two never share a results file. A plan step whose word count cannot be read gets
a share of the target, flagged ``count_source="default"`` and reported in ``plan_note``.
"""

from lw.agentwrite.answers import METHODS, predict_agentwrite, run_settings, write
from lw.agentwrite.cleanup import strip_label
from lw.agentwrite.compare import long_table, summary
from lw.agentwrite.config import AgentWriteConfig, make_items
from lw.agentwrite.direct import write_direct
from lw.agentwrite.outline import (
    PlanStep,
    check_plan,
    infer_length,
    parse_plan,
    plan_step_limit,
    scaffold_steps,
    unread_counts_note,
)
from lw.agentwrite.writer import AgentWriter

__all__ = ["METHODS", "AgentWriteConfig", "AgentWriter", "PlanStep", "check_plan", "infer_length",
           "long_table", "make_items", "parse_plan", "predict_agentwrite", "plan_step_limit", "run_settings",
           "scaffold_steps",
           "strip_label", "summary", "write",
           "unread_counts_note", "write_direct"]
