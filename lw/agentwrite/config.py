"""AgentWrite's settings and its items: ``AgentWriteConfig`` and ``make_items``.

    cfg = AgentWriteConfig(mode="parallel", prompts="official")
    items = make_items(["Write a 3000-word history of the printing press."])
"""

import hashlib
import math
from dataclasses import dataclass

from lw import prompts
from lw.agentwrite.plan import infer_target_words
from lw.agentwrite.prompting import SETS
from lw.errors import LwError
from lw.llm.base import GenerationConfig


@dataclass(frozen=True)
class AgentWriteConfig:
    """Settings of one AgentWrite run (recorded with every result).

    ``prompts="official"`` runs the paper's plan and write prompts (``lw.agentwrite.prompting``
    says how they are filled and what differs); it changes the prompts only: sampling and token
    budgets stay these settings (the official scripts sampled at temperature 1.0 and gave every
    call 4,096 new tokens).
    """

    mode: str = "sequential"  # "sequential" (the paper) or "parallel" (+Parallel ablation)
    prompts: str = "kit"  # "kit" (our own, versioned) or "official" (the paper's, fetched)
    plan_mode: str = "auto"  # "free", "scaffold", or "auto": free-form, scaffold if unusable
    temperature: float = 1.0  # the paper's setting
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = 0
    plan_max_new_tokens: int = 1024
    scaffold_words_per_step: int = 400
    tokens_per_word: float = 1.5  # paragraph budget: words x this + margin, in 128-token buckets
    token_margin: int = 32
    max_new_tokens: int = 4096  # cap on any one call (the paper's fixed budget)
    default_target_words: int = 2000
    language: str | None = None  # None follows the instruction (Chinese characters -> "zh")
    retry_short: int = 0  # re-ask a paragraph that ends under short_ratio of its words (weak models)
    short_ratio: float = 0.25

    def __post_init__(self):
        if self.mode not in ("sequential", "parallel"):
            raise LwError(f"mode must be 'sequential' or 'parallel', got {self.mode!r}.")
        if self.plan_mode not in ("auto", "free", "scaffold"):
            raise LwError(f"plan_mode must be 'auto', 'free' or 'scaffold', got {self.plan_mode!r}")
        if self.language not in (None, *prompts.LANGUAGES):
            raise LwError(f"language must be None (detect) or one of {prompts.LANGUAGES}; got "
                          f"{self.language!r}.")
        if self.prompts not in SETS:
            raise LwError(f"prompts must be 'kit' (the kit's own) or 'official' (the paper's), "
                          f"got {self.prompts!r}.")
        if self.prompts == "official" and self.language is not None:
            raise LwError("the official AgentWrite prompts exist in English only, so language "
                          "cannot be chosen with prompts='official'; leave language=None.")

    def budget(self, words: int) -> int:
        tokens = words * self.tokens_per_word + self.token_margin
        return min(self.max_new_tokens, 128 * math.ceil(tokens / 128))

    def generation(self, max_new_tokens: int, attempt: int = 0, **extra) -> GenerationConfig:
        """Settings for one call; a retry (``attempt`` > 0) samples with another seed."""
        seed = None if self.seed is None else self.seed + 1000 * attempt
        return GenerationConfig(max_new_tokens=max_new_tokens, temperature=self.temperature,
                                top_p=self.top_p, repetition_penalty=self.repetition_penalty,
                                seed=seed, **extra)


def make_items(instructions, default_target: int = 2000) -> list[dict]:
    """Normalise instructions to ``lw.records.Prompt`` dicts (``id``, ``prompt``, ``length``,
    ``length_source``): strings, or dicts with ``prompt`` (or the older ``instruction``),
    optional ``length`` (``target_words``) and ``id``. A missing length is read from the text
    ("a 5000-word essay"), else ``default_target``; ``length_source`` says which."""
    items = []
    for raw in instructions:
        item = {"prompt": raw} if isinstance(raw, str) else dict(raw)
        instr = (item.get("prompt") or item.get("instruction") or "").strip()
        if not instr:
            raise LwError(f"empty instruction in {raw!r:.100}: every item needs text to write.")
        target = item.get("length") or item.get("target_words")
        source = "given"
        if not target:
            target, source = infer_target_words(instr, default_target)
        if int(target) < 1:
            raise LwError(f"target length must be positive, got {target} for {instr[:60]!r}.")
        key = item.get("id") or hashlib.sha1(instr.encode()).hexdigest()[:12]
        items.append({"id": str(key), "prompt": instr, "length": int(target),
                      "length_source": source})
    ids = [i["id"] for i in items]
    if len(set(ids)) != len(ids):
        raise LwError("two items share an id; give each instruction its own 'id'.")
    return items
