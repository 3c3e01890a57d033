"""AgentWrite's settings and its items: ``AgentWriteConfig`` and ``make_items``.

    cfg = AgentWriteConfig(mode="parallel", prompts="official")
    items = make_items(["Write a 3000-word history of the printing press."])
"""

import hashlib
import math
import numbers
from dataclasses import dataclass

from lw import prompts, records
from lw.agentwrite.outline import infer_length
from lw.agentwrite.prompting import SETS
from lw.errors import LwError
from lw.llm.base import GenerationConfig
from lw.records import Prompt

PLAN_MODES = ("auto", "free", "scaffold", "scaffold_chat")


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
    # "free", "scaffold", "scaffold_chat" or "auto" (free-form, scaffolded if unusable). A
    # scaffold continues "Paragraph i - Main Point:" prefixes where the backend can, else asks
    # each line's main point in a chat turn of its own ("scaffold_chat" forces that way).
    plan_mode: str = "auto"
    temperature: float = 1.0  # the paper's setting
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = 0
    plan_max_new_tokens: int = 1024
    scaffold_words_per_step: int = 400
    tokens_per_word: float = 1.5  # paragraph budget: words x this + margin, in 128-token buckets
    token_margin: int = 32
    max_new_tokens: int = 4096  # cap on any one call (the paper's fixed budget)
    default_length: int = 2000
    language: str | None = None  # None follows the instruction (Chinese characters -> "zh")
    retry_short: int = 0  # re-ask a paragraph ending under short_ratio of its words (weak models)
    short_ratio: float = 0.25

    def __post_init__(self):
        if self.mode not in ("sequential", "parallel"):
            raise LwError(f"mode must be 'sequential' or 'parallel', got {self.mode!r}.")
        if self.plan_mode not in PLAN_MODES:
            raise LwError(f"plan_mode must be one of {PLAN_MODES}, got {self.plan_mode!r}.")
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


def make_items(instructions, default_target: int = 2000) -> list[Prompt]:
    """Normalise instructions to ``lw.records.Prompt`` rows (``id``, ``prompt``, ``length``,
    ``length_source``): strings, or dicts with ``prompt`` (or the older ``instruction``),
    optional ``length`` (``target_words``) and ``id``. A missing length is read from the text
    ("a 5000-word essay"), else ``default_target``; ``length_source`` says which.

    Raises:
        LwError: naming the row (its position and id) and the field, for a row that is neither a
            string nor a dict, has no text, a length that is not a whole number, a length (given
            or read from the text) under 1 word, or an id another row has.
    """
    if isinstance(instructions, (str, dict)):
        raise LwError("make_items takes a list of instructions (strings or dicts); wrap one in "
                      "[ ].")
    items = [_item(raw, n, default_target) for n, raw in enumerate(instructions, 1)]
    seen: dict = {}
    for n, item in enumerate(items, 1):
        if item["id"] in seen:
            raise LwError(f"rows {seen[item['id']]} and {n} share an id ({item['id']!r}); give "
                          "each instruction its own 'id'.")
        seen[item["id"]] = n
    return items


def _item(raw, n: int, default_target: int) -> dict:
    """Row ``n`` (1-based) as an item, or an LwError naming the row and the field."""
    if not isinstance(raw, (str, dict)):
        raise LwError(f"row {n} is a {type(raw).__name__} ({raw!r:.80}); give a string or a "
                      "dict with 'prompt' (and optional 'length', 'id').")
    item = {"prompt": raw} if isinstance(raw, str) else records.prompt(raw, required=())
    where = f"row {n}" + (f" (id {item['id']!r})" if item.get("id") is not None else "")
    instr = item.get("prompt")
    if not isinstance(instr, str) or not instr.strip():
        field = "prompt"
        got = "is missing" if field not in item else f"is {instr!r:.60}"
        raise LwError(f"{where}: '{field}' {got}; every item needs text to write (fields "
                      f"given: {', '.join(map(str, item)) or 'none'}).")
    instr = instr.strip()
    field = "length"
    target, source = item.get(field), "given"
    if isinstance(target, float) and math.isnan(target):  # a missing cell in a pandas table
        target = None
    if target is None:
        target, source = infer_length(instr, default_target)
        if target < 1:  # "write 0 words": never silently replaced by the default
            raise LwError(f"{where}: the instruction asks for {target} words ({instr[:60]!r}); "
                          "a target must be at least 1 word: fix the text or give 'length'.")
    elif isinstance(target, bool) or not (isinstance(target, numbers.Real) and
                                          float(target).is_integer()):
        raise LwError(f"{where}: '{field}' must be a whole number of words, got {target!r}.")
    elif target < 1:
        raise LwError(f"{where}: '{field}' is {target}; a target must be at least 1 word (leave "
                      "it out to read the length from the instruction).")
    key = item.get("id")
    if key is None or key == "":
        key = hashlib.sha1(instr.encode()).hexdigest()[:12]
    return {"id": str(key), "prompt": instr, "length": int(target), "length_source": source}
