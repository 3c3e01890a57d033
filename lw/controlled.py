"""The controlled experiment of the paper's section 2: is a model's maximum output length set by
the longest outputs in its SFT data?

The paper filtered one general SFT set to outputs of at most 500 / 1,000 / 2,000 words and
fine-tuned GLM-4-9B on each. Filtering changes more than the length: the subsets hold different
instructions, and a cap's subset holds few answers near the cap. Here the default design keeps
everything but the length fixed: the same conversations under every cap, each answer cut at a
paragraph boundary to fit under the cap (``design="cut"``). ``"filter"`` is the paper's way
(answers at most the cap, drawn at random), ``"fill"`` draws answers between ``fill`` x cap and
the cap, so each subset's answers reach towards its cap. Every subset has the same size; one
model per cap and training seed from the same base and recipe; every model answers the same
prompts, so the answers line up by prompt for a bootstrap interval over prompts and seeds.

    subsets = make_subsets(pool, caps=[100, 300, 900], design="cut")
    result = run(subsets, recipe, prompts, "runs/small/controlled", seeds=[0, 1],
                 max_new_tokens=1536)
    caps, y = lw.stats.values_by_cap(result.preds, "usable_words")   # [prompts, caps, seeds]
    lw.stats.spearman(caps, y, seeds="crossed")
"""

import random
import re
from dataclasses import dataclass
from pathlib import Path

from lw import text
from lw.errors import LwError
from lw.records import Answer, Prompt

# What each design takes from the pool (the notebook prints it beside the counts, so the
# conversations a design leaves out are said, not silently dropped).
DESIGN_RULES = {
    "cut": "answers longer than the largest cap, each cut to every cap",
    "filter": "answers of at most the cap, drawn per cap",
    "fill": "answers between fill x cap and the cap, drawn per cap",
}
DESIGNS = tuple(DESIGN_RULES)


def answer_words(conv: dict) -> int:
    """Words in a conversation's last assistant message (LongBench-Write's measure)."""
    return text.count_words(_answer(conv)["content"])


def _answer(conv: dict) -> dict:
    answers = [m for m in conv.get("messages", []) if m.get("role") == "assistant"]
    if not answers:
        raise LwError(f"a conversation without an assistant message: {str(conv)[:120]}. Every "
                      "pool conversation needs an answer (lw.sft.load_conversations checks this).")
    return answers[-1]


# A paragraph ends at a blank line; a markdown heading or list item on its own line also starts
# one, since AgentWrite's answers put headings on single lines.
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n+|\n(?=[ \t]*(?:#{1,6} |[-*] |\d+[.)] ))")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]”’]*(?=\s)|(?<=[。！？])[”’」』]*")


def cut_answer(answer: str, cap: int) -> tuple[str, str]:
    """``answer`` cut to at most ``cap`` words at the last paragraph boundary that fits.

    Returns:
        (text, how): ``how`` is "whole" (it already fits), "paragraph", "sentence" (not even
        the first paragraph fits, so the cut falls at the last sentence end that does) or
        "words" (not even the first sentence fits: the first ``cap`` words). The caller counts
        the kinds, so a subset where many answers had to be cut mid-paragraph says so.
    """
    if cap < 1:
        raise LwError(f"cap {cap}: caps are positive word counts.")
    if text.count_words(answer) <= cap:
        return answer, "whole"
    # A paragraph ends where its boundary starts; a sentence after its closing quotes.
    for pattern, how, end in ((_PARAGRAPH_END, "paragraph", False),
                              (_SENTENCE_END, "sentence", True)):
        best = None
        for m in pattern.finditer(answer):
            at = m.end() if end else m.start()
            words = text.count_words(answer[:at])
            if words > cap:
                break
            # A cut that would end on a heading line would teach the model to stop after one.
            if words > 0 and not answer[:at].rstrip().rsplit("\n", 1)[-1].lstrip().startswith("#"):
                best = at
        if best is not None:
            return answer[:best].rstrip(), how
    words = list(re.finditer(r"\b[a-zA-Z]+\b|[\u4e00-\u9fff]", answer))
    return answer[:words[cap - 1].end()], "words"


def make_subsets(pool: list[dict], caps, design: str = "cut", n: int | None = None,
                 seed: int = 0, fill: float = 0.5) -> dict[int, list[dict]]:
    """One training set per cap, all of the same size.

    Args:
        pool: conversations (``{"messages": [...]}``), e.g. notebook 04's files.
        caps: at least two positive word caps.
        design: "cut" (default): the same ``n`` conversations for every cap, drawn from those
            whose answers are longer than the largest cap, each answer cut by ``cut_answer``;
            "filter": ``n`` drawn from the answers of at most the cap (the paper's design);
            "fill": ``n`` drawn from the answers of ``fill`` x cap to cap words.
        n: conversations per cap; default all that the design allows (for "cut", every answer
            longer than the largest cap; else what the tightest cap has).
        seed: the draw's seed (the same draw for every training seed).
        fill: the lower bound of "fill", as a share of the cap.

    Returns:
        ``{cap: conversations}``; a cut conversation carries ``"cut": "paragraph" | "sentence"
        | "words" | "whole"`` and ``"original_words"``. Too few conversations is an LwError
        saying how many each cap has.
    """
    caps = sorted({int(c) for c in caps})
    if len(caps) < 2 or caps[0] <= 0:
        raise LwError(f"give at least two distinct positive caps, got {caps}.")
    if design not in DESIGNS:
        raise LwError(f"design {design!r}: use one of {', '.join(DESIGNS)}.")
    if not 0 < fill < 1:
        raise LwError(f"fill {fill}: a share of the cap between 0 and 1, e.g. 0.5.")
    rng = random.Random(seed)
    if design == "cut":
        long = [c for c in pool if answer_words(c) > caps[-1]]
        n = n or len(long)
        if n < 2 or len(long) < n:
            raise LwError(f"{len(long)} pool answers are longer than the largest cap "
                          f"({caps[-1]} words) and {n} are needed: lower the largest cap, lower "
                          "n, build longer answers (notebook 04's MIN_WORDS), or add a pool "
                          "with long answers (POOL, e.g. the paper's hub:THUDM/LongWriter-6k).")
        chosen = rng.sample(long, n)
        return {cap: [_cut(c, cap) for c in chosen] for cap in caps}
    low = {cap: (int(fill * cap) if design == "fill" else 0) for cap in caps}
    under = {cap: [c for c in pool if low[cap] < answer_words(c) <= cap] for cap in caps}
    n = n or min(len(v) for v in under.values())
    short = {cap: len(v) for cap, v in under.items() if len(v) < n}
    if n < 2 or short:
        raise LwError(f"too few conversations for {n} per cap ({design}): "
                      f"{ {cap: len(v) for cap, v in under.items()} } per cap. Lower n, change "
                      "the caps, or build a bigger pool (notebook 04).")
    return {cap: rng.sample(under[cap], n) for cap in caps}


def cap_subsets(pool: list[dict], caps, n: int | None = None, seed: int = 0):
    """The paper's design: ``make_subsets(pool, caps, design="filter", n=n, seed=seed)``."""
    return make_subsets(pool, caps, design="filter", n=n, seed=seed)


def _cut(conv: dict, cap: int) -> dict:
    answer = _answer(conv)
    cut, how = cut_answer(answer["content"], cap)
    messages = [({**m, "content": cut} if m is answer else m) for m in conv["messages"]]
    return {**conv, "messages": messages, "cut": how,
            "original_words": text.count_words(answer["content"])}


def describe(subsets: dict[int, list[dict]]):
    """A table of the subsets: size, answer words (mean, max, share of the cap filled) and, for
    the cut design, how many answers were cut at a paragraph, a sentence, or mid-sentence."""
    import pandas as pd

    rows = []
    for cap, convs in subsets.items():
        words = [answer_words(c) for c in convs]
        cuts = [c.get("cut") for c in convs]
        rows.append({"cap": cap, "conversations": len(convs),
                     "data_mean_words": round(sum(words) / len(words), 1),
                     "data_max_words": max(words),
                     "fill": round(sum(words) / len(words) / cap, 3),
                     **{f"cut_{k}": cuts.count(k) for k in ("paragraph", "sentence", "words")
                        if any(x is not None for x in cuts)}})
    return pd.DataFrame(rows)


@dataclass
class Result:
    """What ``run`` returns.

    Attributes:
        table: one row per cap, over all seeds: the data's lengths, the answers' mean and max
            words and usable words, the share that ended by themselves, failures.
        per_seed: the same, one row per cap and training seed.
        preds: ``{cap: [records of seed 0, of seed 1, ...]}``, every model's answers to the same
            prompts, as ``lw.stats.values_by_cap`` takes them.
        models: ``{(cap, seed): model spec}``.
    """

    table: object
    per_seed: object
    preds: dict
    models: dict


def run(subsets: dict[int, list[dict]], recipe, prompts: list[Prompt], folder,
        max_new_tokens: int, seeds=(0,), batch_size: int = 8, progress: bool = True,
        overrides: dict | None = None, size=None, **generation) -> Result:
    """Train one model per cap and training seed (``lw.sft.train``, output
    ``<folder>/cap-<cap>-seed-<seed>``) and let each answer ``prompts`` (rows with ``id``,
    ``prompt``, ``length``), sampling with that seed. Resumable: finished models and stored
    answers are reused, so an interrupted run goes on where it stopped.

    ``recipe`` is a file or dict; ``overrides`` are recipe values for every model (the seed is
    set per model, and they beat the size's); ``size`` (``lw.profiles.Size``), where given,
    sets each model's training options under them (``Size.train_options``: bf16 autocast on a
    CPU with bf16 instructions where the size asks for it) and each trained model's load options
    (``Size.options``); ``generation`` the sampling settings (``temperature``,
    ``repetition_penalty``...). A model whose answers failed keeps them out of ``preds``' ids:
    failures are counted in the tables, and ``lw.stats.values_by_cap`` refuses unequal prompts.
    """
    import pandas as pd

    from lw import llm, store
    from lw.generation import predict
    from lw.sft import train
    from lw.sft.config import Recipe, load_recipe

    if isinstance(recipe, Recipe):
        raise LwError("pass the recipe as a file or dict: each model gets its own output_dir.")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise LwError(f"seeds {seeds}: give one or more distinct training seeds.")
    generation.pop("seed", None)  # each model samples with its training seed
    folder = Path(folder)
    overrides = dict(overrides or {})
    if size is not None:
        overrides = {**size.train_options(overrides.get("model")), **overrides}
    preds, models, per_seed = {}, {}, []
    for cap, convs in subsets.items():
        data_words = [answer_words(c) for c in convs]
        for s in seeds:
            one = load_recipe(recipe, **{**overrides, "seed": s,
                                         "output_dir": str(folder / f"cap-{cap}-seed-{s}")})
            trained = train(one, data=[{"messages": c["messages"]} for c in convs],
                            progress=progress)
            model = llm.load(trained.spec, batch_size=batch_size,
                             **(size.options(trained.spec) if size is not None else {}))
            try:
                answers = predict(
                    model, prompts, store.keyed_path(folder, f"cap-{cap}-seed-{s}-answers",
                                                     model=model, seed=s,
                                                     max_new_tokens=max_new_tokens,
                                                     **generation),
                    max_new_tokens=max_new_tokens, seed=s, progress=progress, **generation)
            finally:
                model.close()
            preds.setdefault(cap, []).append(answers)
            models[(cap, s)] = trained.spec
            per_seed.append({"cap": cap, "seed": s, **_summary(answers, data_words),
                             "model": trained.spec,
                             "train_seconds": trained.stats.get("train_seconds")})
    table = pd.DataFrame([{"cap": cap, "seeds": len(seeds),
                           **_summary([p for run in runs for p in run],
                                      [answer_words(c) for c in subsets[cap]])}
                          for cap, runs in preds.items()])
    return Result(table=table, per_seed=pd.DataFrame(per_seed), preds=preds, models=models)


def _summary(answers: list[Answer], data_words: list[int]) -> dict:
    from lw.records import answer_usable_words as usable_words

    done = [p for p in answers if p.get("status") == "done"]
    usable = [usable_words(p) for p in done]

    def mean(v):
        return round(sum(v) / len(v), 1) if v else None

    return {"conversations": len(data_words),
            "data_mean_words": mean(data_words), "data_max_words": max(data_words),
            "mean_words": mean([p["words"] for p in done]),
            "mean_usable_words": mean(usable),
            "max_words": max((p["words"] for p in done), default=None),
            "max_usable_words": max(usable, default=None),
            "stopped": round(sum(p["finish_reason"] == "stop" for p in done) / len(done), 3)
            if done else None,
            "failed": len(answers) - len(done)}



def main(argv=None) -> int:
    """``python -m lw.controlled``: notebook 06 from the command line (its profile's defaults):
    one model per cap and training seed, their answers to LongWrite-Ruler, and Spearman's rank
    correlation of the cap with the usable words written, with its 95% interval."""
    import argparse

    import lw.sft
    from lw import paths, profiles, stats
    from lw.paper import benchmarks

    ap = argparse.ArgumentParser(prog="python -m lw.controlled", description=main.__doc__)
    ap.add_argument("--size", choices=paths.SIZES, help="default $LW_SIZE, else small")
    ap.add_argument("--model", help="the base model to fine-tune (default the size's)")
    ap.add_argument("--pool", action="append",
                    help="conversation file or hub id (repeat; default the profile's, else "
                         "notebook 04's two files in the run folder)")
    ap.add_argument("--design", choices=DESIGNS)
    ap.add_argument("--caps", type=int, nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", help="training seeds")
    ap.add_argument("--seed", type=int, default=0, help="the subset draw and the prompt pick")
    args = ap.parse_args(argv)
    size = profiles.resolve_size(args.size, model=args.model)
    lw.sft.check_trainable(size.model)
    p = profiles.get("06", size)
    run_folder = paths.run_dir(size.name)
    sources = args.pool or list(p.pool) or [str(run_folder / "data" / "longwriter-kit.jsonl"),
                                            str(run_folder / "data" / "general-self.jsonl")]
    pool = [c for source in sources for c in lw.sft.load_conversations(source)]
    subsets = make_subsets(pool, args.caps or list(p.caps), design=args.design or p.design,
                           n=p.n_per_cap, seed=args.seed)
    prompts = benchmarks.subset(benchmarks.load("longwrite_ruler"), n=p.n_prompts,
                                seed=args.seed, languages=("en",))
    result = run(subsets, paths.home() / p.recipe, prompts, run_folder / "controlled",
                 max_new_tokens=p.max_new_tokens, seeds=args.seeds or list(p.train_seeds),
                 batch_size=size.batch_size, size=size,
                 overrides=dict(model=size.model, save_strategy="no", **p.recipe_overrides),
                 temperature=p.temperature, repetition_penalty=p.repetition_penalty)
    print(result.table.to_string(index=False))
    caps, y = stats.values_by_cap(result.preds, "usable_words")
    rho = stats.spearman(caps, y, seeds="crossed")
    print(f"Spearman(cap, usable words) = {rho['estimate']:.2f} [{rho['low']:.2f}, "
          f"{rho['high']:.2f}] over {rho['n_prompts']} prompts x {rho['n_seeds']} seeds: "
          f"{stats.verdict(rho, up='rises', down='falls', same='no clear trend')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
