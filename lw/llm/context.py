"""Budgets within a model's context: what a run's requests will get, told before they are sent.

A request spans its prompt and its reply, and no backend can go past its context: a vLLM server
rejects ``prompt + max_tokens > max_model_len`` with a 400, llama-cpp-python shortens
``max_tokens`` without a word, a local model runs out of trained positions. Each backend reports
its context (``model.capabilities.context``) and lowers a reply's budget to what the context
leaves (``ChatModel.fit``). This module looks at a whole run first:

    plan = lw.llm.context.plan(model, rows, max_new_tokens=32768)
    plan.warn()          # prints what will be capped or cannot fit, before any request
    plan.refused         # ids whose prompt alone fills the context (never sent)

``YARN_4X`` is Qwen2.5's documented rope scaling to 131,072 positions (its model card: YaRN,
factor 4 over the original 32,768), which lets a 32,768-token answer fit with its prompt;
``long_context_options(spec)`` gives the load options that apply it on each backend.
"""

import math
import warnings
from dataclasses import dataclass, field

# Tokens a word takes when a required length is turned into a budget: ~1.3 for English prose
# with these tokenizers, rounded up so that a plan errs towards "will not fit".
TOKENS_PER_WORD = 1.5

YARN_4X = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
QWEN25_ROPE_THETA = 1000000.0  # Qwen2.5's config.json
# Models whose documented long-context setting is YaRN x4 (their config says 32,768).
YARN_MODELS = ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-14B-Instruct",
               "Qwen/Qwen2.5-32B-Instruct", "Qwen/Qwen2.5-72B-Instruct")


# Contexts as the models' published config.json files state them, for plans made before a
# model is on disk (``python -m lw.run --check``); a loaded model reads its own config.
PUBLISHED = {
    "Qwen/Qwen2.5-7B-Instruct": 32768,
    "Qwen/Qwen2.5-0.5B-Instruct": 32768,
    "Qwen/Qwen2.5-1.5B-Instruct": 32768,
    "THUDM/LongWriter-llama3.1-8b": 131072,
    "THUDM/LongWriter-glm4-9b": 131072,
}


def long_context_options(spec: str) -> dict:
    """Load options that give ``spec`` its documented long context, else ``{}``: for the
    Qwen2.5 models in ``YARN_MODELS``, YaRN x4 (131,072 positions) as ``rope_scaling`` on the
    kit's engine (``hf:``, merged into the model's own rope settings) and as vLLM's
    ``--hf-overrides '{"rope_parameters": ...}' --max-model-len 131072`` (``vllm:``).
    An ``openai:`` server's context is set where the server starts, not here."""
    kind, _, model_id = spec.removeprefix("agentwrite:").partition(":")
    if model_id not in YARN_MODELS:
        return {}
    window = int(YARN_4X["factor"] * YARN_4X["original_max_position_embeddings"])
    if kind == "hf":
        return {"rope_scaling": dict(YARN_4X)}
    if kind == "vllm":
        # vLLM reads rope settings from --hf-overrides as transformers v5 names them
        # (``rope_parameters``, replaced whole: the model's base frequency goes in too; its docs'
        # "context extension" page, which also retires the older --rope-scaling flag).
        rope = {**YARN_4X, "rope_theta": QWEN25_ROPE_THETA}
        return {"hf_overrides": {"rope_parameters": rope}, "max_model_len": window}
    return {}


@dataclass
class Plan:
    """What a run's requests will get from the context (see ``plan``)."""

    spec: str
    context: int | None
    context_how: str
    budget: int
    rows: int
    capped: dict = field(default_factory=dict)  # id -> tokens the context leaves (< budget)
    short: dict = field(default_factory=dict)  # id -> (tokens the length needs, tokens left)
    refused: dict = field(default_factory=dict)  # id -> why (the prompt fills the context)

    def lines(self) -> list[str]:
        """The plan in words, one finding a line (empty when every request fits)."""
        if self.context is None:
            hint = "pass context=<tokens> to lw.llm.load" if self.spec.startswith(
                "openai:") else "it is read from the model's config when it loads"
            return [f"{self.spec}: context unknown ({self.context_how}); budgets of "
                    f"{self.budget} tokens cannot be checked against it now: {hint}."]
        out = []
        if self.refused:
            out.append(f"{self.spec}: {len(self.refused)} of {self.rows} prompts fill the "
                       f"{self.context}-token context and will not be sent "
                       f"({', '.join(map(str, list(self.refused)[:5]))}).")
        if self.capped:
            low = min(self.capped.values())
            out.append(f"{self.spec}: {len(self.capped)} of {self.rows} replies will be capped "
                       f"below the {self.budget}-token budget (to as few as {low} tokens) by the "
                       f"{self.context}-token context ({self.context_how}); each capped reply "
                       "records it.")
        if self.short:
            need, room = max(self.short.values())
            out.append(f"{self.spec}: {len(self.short)} of {self.rows} prompts ask for more words "
                       f"than the context leaves room for (e.g. ~{need} tokens needed, {room} "
                       "left): use a model with a longer context (lw.llm.context."
                       "long_context_options) or expect those answers short of their length.")
        return out

    def warn(self) -> None:
        """Each finding as a warning, before the run."""
        for line in self.lines():
            warnings.warn(line, stacklevel=3)

    def to_dict(self) -> dict:
        return {"spec": self.spec, "context": self.context, "context_how": self.context_how,
                "budget": self.budget, "rows": self.rows, "capped": len(self.capped),
                "short": len(self.short), "refused": len(self.refused)}


def plan(model, rows: list[dict], max_new_tokens: int,
         tokens_per_word: float = TOKENS_PER_WORD) -> Plan:
    """What ``model``'s context gives each row's request at ``max_new_tokens``.

    Args:
        model: an ``lw.llm`` chat model.
        rows: dicts with ``id``, ``prompt`` and (optionally) ``length``, the words required.
        max_new_tokens: the run's budget a reply.
        tokens_per_word: turns a required length into the tokens it needs.

    Returns:
        A ``Plan``: rows whose reply will be capped, rows whose required length the context
        cannot hold, rows whose prompt fills it.
    """
    from lw.llm.base import as_conversation

    context = model.capabilities.context
    out = Plan(model.spec, context, model.context_how(), max_new_tokens, len(rows))
    if context is None:
        return out
    for row in rows:
        conv = as_conversation(row["prompt"])
        prompt = model.prompt_token_bound(conv)
        room = context - prompt
        if room < 1:
            out.refused[row["id"]] = (f"a prompt of {prompt} tokens fills the {context}-token "
                                      f"context of {model.spec}")
            continue
        if room < max_new_tokens:
            out.capped[row["id"]] = room
        need = math.ceil(row["length"] * tokens_per_word) if row.get("length") else 0
        if need > room:
            out.short[row["id"]] = (need, room)
    return out
