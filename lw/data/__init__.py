"""Long-output SFT data built with AgentWrite (LongWriter-6k's recipe, paper section 3.2).

    rows = lw.data.instructions("kit", max_words=1500)       # or "hub:THUDM/LongWriter-6k", a JSONL
    result = lw.data.build(model, rows, "runs/small/data", AgentWriteConfig(mode="parallel"))
    result.kept, result.rejected, result.reasons             # filtered, each rejection with a reason
    short = lw.data.short_answers(model, "runs/small/data")  # offline general SFT set for mixing

``build`` writes ``<name>.jsonl`` (chat format, ``{"messages": [...]}``), a ``datasets`` folder
``<name>/`` and a data card ``<name>.md`` beside the AgentWrite records it resumes from. Filters,
each counted with its reason: the item failed (plan or paragraph error), the text is far below
its target, it degenerates (too small a share of its words come before it falls into a loop or
word salad, ``lw.text.usable_words``), or it repeats itself throughout (share of repeated
4-grams above a bound; small models loop).
"""

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from lw import records, text
from lw.data import pairs  # noqa: E402,F401 - lw.data.pairs: the preference pairs DPO trains on
from lw.errors import LwError
from lw.paper.benchmarks import check_length, check_rows
from lw.records import Answer, Prompt
from lw.resources import short_prompts  # noqa: F401 - lw.data.short_prompts, as 04 calls it
from lw.store import jsonl_lines

HERE = Path(__file__).parent
VERSION = 2  # bump when filters or the output format change (2: the "degenerate" filter)


@dataclass(frozen=True)
class Filters:
    """When an AgentWrite output is kept as training data."""

    min_ratio: float = 0.5  # words / target below this: "too short"
    max_repetition: float = 0.2  # share of repeated 4-grams above this: "repetitive"
    min_words: int = 20  # answers shorter than this are "empty" (short-answer sets too)
    # usable words / words below this: "degenerate". Beside the repetition bound, not instead:
    # the 4-gram share averages a decayed tail away (the SFT answers that end in "answer
    # requested answer requested ..." scored 0.13 like the base's), while usable words, which
    # only cut a tail, count an answer that repeats its phrases all the way through whole.
    # 0.9: a 50-word loop at the end of a 500-word answer is already too much to train on.
    min_usable_share: float = 0.9


@dataclass
class BuildResult:
    """The kept conversations, the rejected records with reasons, and where files went."""

    kept: list[dict]
    rejected: list[dict]
    reasons: dict[str, int] = field(default_factory=dict)
    jsonl: Path | None = None
    dataset_dir: Path | None = None
    card: Path | None = None
    kept_records: list[dict] = field(default_factory=list)  # the AgentWrite records kept

    def table(self):
        """One row per input item: id, target, words, repetition, kept, reason."""
        import pandas as pd

        rows = [{**{k: r.get(k) for k in ("id", "length", "words", "repetition")},
                 "kept": r.get("reason") is None, "reason": r.get("reason")}
                for r in self.kept_records + self.rejected]
        return pd.DataFrame(rows)


def instructions(source: str = "kit", n: int | None = None, min_words: int = 0,
                 max_words: int | None = None, seed: int = 0) -> list[Prompt]:
    """Long-writing instructions as ``{"id", "prompt", "length", "type"}`` rows.

    Args:
        source: "kit" (written for this kit, offline), ``hub:<id>`` (e.g.
            ``hub:THUDM/LongWriter-6k``: its user turns, with the length asked for read from the
            text, else the length of its own answer) or a JSONL path (``prompt``/``instruction``,
            and ``length``, which may be left out where the prompt states it, e.g. "a
            3000-word essay"). A row without a usable prompt or with a length below 1 is an
            LwError naming it.
        n, min_words, max_words, seed: how many, which required lengths, seeded pick.
    """
    from lw import resources as kit
    from lw.agentwrite import infer_length

    if source == "kit":
        return kit.load(min_words=min_words, max_words=max_words, n=n, seed=seed)
    if source.startswith("hub:"):
        from lw.conversations import load

        rows, unknown = [], 0
        for i, conv in enumerate(load(source)):
            user = next(m["content"] for m in conv["messages"] if m["role"] == "user")
            answer = next(m["content"] for m in conv["messages"] if m["role"] == "assistant")
            length, how = infer_length(user, default=0)
            length = length if how != "default" else text.count_words(answer)
            if length < 1:  # no length asked for and no words answered: no target to write to
                unknown += 1
                continue
            rows.append({"id": f"{source[4:]}-{i}", "prompt": user, "type": "hub",
                         "length": length})
        if unknown:
            warnings.warn(f"{source}: left out {unknown} conversations whose request states no "
                          "length and whose answer has no words to count.", stacklevel=2)
    else:
        rows = _jsonl_instructions(source)
    check_rows(rows, ("id", "prompt", "length"), f"the instructions from {source}")
    rows = [r for r in rows if r["length"] >= min_words and (max_words is None or
                                                           r["length"] <= max_words)]
    if n is not None and n < len(rows):
        import random

        rows = sorted(random.Random(seed).sample(rows, n), key=lambda r: r["id"])
    return rows


def _jsonl_instructions(source: str) -> list[Prompt]:
    """Rows of a JSONL of instructions (see ``instructions``), each checked as it is read."""
    from lw.agentwrite import infer_length

    path = Path(source)
    if not path.is_file():
        raise LwError(f"instruction source {source!r} is neither 'kit', hub:<id> nor a file.")
    rows = []
    for i, line in enumerate(jsonl_lines(path)):
        where = f"{path}, record {i + 1}"
        try:
            r = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LwError(f"{where} is not valid JSON ({exc}): fix or delete it.") from exc
        if not isinstance(r, dict):
            raise LwError(f"{where} is a {type(r).__name__}, not an object with 'prompt' "
                          "and 'length'.")
        r = records.prompt(r, required=())
        prompt = r.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise LwError(f"{where} has no 'prompt' (or 'instruction') text; it has "
                          f"{', '.join(sorted(r)) or 'no fields'}.")
        length = r.get("length")
        if length is None:
            length, how = infer_length(prompt)
            if how == "default":  # "write 0 words" or no number at all: nothing to go by
                raise LwError(f"{where} has no 'length' and its prompt states no length of at "
                              f"least 1 word ({prompt[:80]!r}): add \"length\": <words>.")
        check_length(length, where)
        rows.append({"id": str(r.get("id", f"{path.stem}-{i}")), "prompt": prompt,
                     "length": length, "type": r.get("type", "user")})
    return rows


def check(record: dict, filters: Filters = Filters()) -> str | None:
    """Why an AgentWrite (or direct) record is not usable as training data, or None if it is."""
    record = records.answer(record)
    if record["status"] != "done":
        return f"failed ({(record.get('error') or 'unknown').split(':')[0]})"
    response = record["response"]
    words = record["words"] if record["words"] is not None else text.count_words(response)
    if words < filters.min_words:
        return "empty"
    if record["length"] and words < filters.min_ratio * record["length"]:
        return "too short"
    if text.usable_words(response) < filters.min_usable_share * text.count_words(response):
        return "degenerate"
    if text.repetition(response) > filters.max_repetition:
        return "repetitive"
    return None


def to_conversation(record: dict) -> dict:
    """A kept record in chat format, with where it came from."""
    record = records.answer(record)
    return {"messages": [{"role": "user", "content": record["prompt"]},
                         {"role": "assistant", "content": record["response"].strip()}],
            "id": record["id"], "words": record["words"], "length": record["length"]}


def select(answers: list[Answer], filters: Filters = Filters()) -> BuildResult:
    """Split answer records into kept conversations and rejected records (with ``reason``)."""
    kept, kept_records, rejected, reasons = [], [], [], {}
    for r in answers:
        reason = check(r, filters)
        if reason is None:
            kept.append(to_conversation(r))
            kept_records.append(r)
        else:
            rejected.append({**r, "reason": reason})
            reasons[reason] = reasons.get(reason, 0) + 1
    return BuildResult(kept, rejected, reasons, kept_records=kept_records)


def build(model, rows: list[Prompt], folder, config=None, filters: Filters = Filters(),
          name: str = "longwriter-kit", progress: bool = True) -> BuildResult:
    """AgentWrite over ``rows``, then filter and save (see the module docstring). Resumable:
    the AgentWrite records live in ``<folder>/<name>-agentwrite-<hash>.jsonl``."""
    from lw.agentwrite import AgentWriteConfig, AgentWriter
    from lw.store import keyed_path

    config = config or AgentWriteConfig()
    folder = Path(folder)
    path = keyed_path(folder, f"{name}-agentwrite", model=model, **vars(config))
    answers = AgentWriter(model, path, config).run(rows, progress=progress)
    result = select(answers, filters)
    save(result, folder, name, source={"model": model.spec, "agentwrite": vars(config),
                                       "filters": vars(filters), "records": str(path)})
    return result


def short_answers(model, folder, prompts=None, max_new_tokens: int = 256,
                  filters: Filters = Filters(max_repetition=0.3), name: str = "general-self",
                  require_stop: bool = True, **settings) -> BuildResult:
    """A general short-answer SFT set for mixing, offline: the model's own direct answers to
    short prompts (the kit's ``short_prompts_en.jsonl`` by default), filtered like ``build``.
    Online, ``lw.conversations.load("hub:<a general SFT set>")`` is the better source.
    ``require_stop`` rejects answers cut off by the token budget (they would teach the model to
    stop mid-sentence)."""
    from lw.generation import predict
    from lw.store import keyed_path

    prompts = short_prompts() if prompts is None else prompts
    folder = Path(folder)
    settings = {"temperature": 0.5, "repetition_penalty": 1.1, "seed": 0, **settings}
    path = keyed_path(folder, f"{name}-answers", model=model,
                      max_new_tokens=max_new_tokens, **settings)
    preds = predict(model, prompts, path, max_new_tokens=max_new_tokens, **settings)
    answers = [{**p, "response": p.get("response", ""),
                "status": "done" if p.get("status") == "done" and (
                    p.get("finish_reason") == "stop" or not require_stop) else "failed",
                "error": p.get("error") or "cut off at the token budget"} for p in preds]
    result = select(answers, filters)
    save(result, folder, name, source={"model": model.spec, "max_new_tokens": max_new_tokens,
                                       "settings": settings, "records": str(path)})
    return result


def save(result: BuildResult, folder, name: str, source: dict) -> BuildResult:
    """Write ``<name>.jsonl``, the ``datasets`` folder ``<name>/`` and the card ``<name>.md``."""
    from datasets import Dataset

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result.jsonl = folder / f"{name}.jsonl"
    tmp = result.jsonl.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in result.kept),
                   encoding="utf-8")
    tmp.replace(result.jsonl)
    result.dataset_dir = folder / name
    if result.kept:
        Dataset.from_list([{"messages": c["messages"]} for c in result.kept]).save_to_disk(
            str(result.dataset_dir))
    result.card = folder / f"{name}.md"
    result.card.write_text(card(result, name, source), encoding="utf-8")
    return result


def card(result: BuildResult, name: str, source: dict) -> str:
    """A short Markdown data card: what was built, how, what was dropped and why."""
    words = sorted(c["words"] for c in result.kept)
    total = len(result.kept) + len(result.rejected)
    lines = [f"# Data card: {name}", "",
             f"Long-output SFT conversations built with `lw.data` v{VERSION} (LongWriter's "
             "AgentWrite recipe, arXiv 2408.07055 section 3.2).", "",
             f"- kept {len(result.kept)} of {total} items"
             + (f"; rejected: {', '.join(f'{k} {v}' for k, v in result.reasons.items())}"
                if result.reasons else ""),
             f"- assistant words: min {words[0] if words else 0}, median "
             f"{words[len(words) // 2] if words else 0}, max {words[-1] if words else 0}, "
             f"total {sum(words)}",
             f"- format: JSONL of `{{\"messages\": [user, assistant]}}` ({name}.jsonl) and a "
             f"`datasets` folder ({name}/)",
             "- generated by: " + json.dumps(source, default=str),
             "- intended use: research on long-output fine-tuning; outputs of a small model are "
             "weak prose and may contain errors of fact.", ""]
    return "\n".join(lines)
