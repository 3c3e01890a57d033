"""LongWrite-Ruler (paper section 2, notebook 01): how long a model writes when asked for
1,000 to 30,000 words.

    rows = lw.paper.benchmarks.subset(lw.paper.benchmarks.load("longwrite_ruler"), n=8)
    preds = lw.generation.predict(model, rows, path, max_new_tokens=...)
    ruler_table(preds)           # per required length: mean / max words, truncated, capped
    max_output_length(preds)     # the longest answer in words

    python -m lw.ruler --model smollm2-135m --prompts 8 --max-new-tokens 2048
"""

from lw import records
from lw.paper.benchmarks import check_rows
from lw.records import Answer, Prompt


def ruler_table(preds: list[Answer]):
    """LongWrite-Ruler: per required length, prompts, mean and max words, mean usable words
    (``lw.records.answer_usable_words``; NaN where no response text was kept), how many the token limit cut
    (``truncated``), how many had their budget lowered by the context (``capped``) and mean
    repetition (near 1: the model looped to the limit)."""
    import pandas as pd

    check_rows(preds, ("id", "length"), "the predictions")
    table = pd.DataFrame([{"id": p["id"], "length": p["length"], "words": p.get("words", 0),
                           "usable_words": records.answer_usable_words(p),
                           "truncated": bool(p.get("truncated")), "capped": bool(p.get("capped")),
                           "repetition": p.get("repetition", 0.0)} for p in preds],
                         columns=["id", "length", "words", "usable_words", "truncated",
                                  "capped", "repetition"]).astype({"usable_words": float})
    grouped = table.groupby("length")
    return grouped.agg(prompts=("id", "count"), mean_words=("words", "mean"),
                       max_words=("words", "max"), mean_usable_words=("usable_words", "mean"),
                       truncated=("truncated", "sum"), capped=("capped", "sum"),
                       repetition=("repetition", "mean")).assign(
        mean_words=lambda d: d["mean_words"].round(0),
        mean_usable_words=lambda d: d["mean_usable_words"].round(0),
        repetition=lambda d: d["repetition"].round(3)).reset_index()


def max_output_length(preds: list[Answer]) -> int:
    """The longest answer in words: the model's maximum output length on these prompts."""
    return max((p.get("words", 0) for p in preds), default=0)


def run(models, rows: list[Prompt], folder, size, **settings) -> dict:
    """Notebook 01's generation: each model answers ``rows`` (one loaded at a time, closed
    before the next), through ``lw.generation.predict`` into a file under ``folder`` named by
    model and settings, so a rerun resumes. ``size`` (``lw.profiles.Size``) gives the batch and
    the load options. Returns ``{spec: predictions}``."""
    import lw.llm
    from lw.generation import predict
    from lw.store import keyed_path

    preds = {}
    for spec in models:
        model = lw.llm.load(spec, batch_size=size.batch_size, **size.options(spec))
        try:
            path = keyed_path(folder, "preds", model=model, **settings)
            preds[spec] = predict(model, rows, path, **settings)
        finally:
            model.close()  # one model (and its server) at a time
    return preds


def main(argv=None) -> int:
    """``python -m lw.ruler``: notebook 01 from the command line (its profile's defaults)."""
    import argparse

    from lw import paths, profiles
    from lw.paper import benchmarks

    ap = argparse.ArgumentParser(prog="python -m lw.ruler", description=__doc__.split("\n\n")[0])
    profiles.add_run_arguments(ap, "ruler")
    args = ap.parse_args(argv)
    size = profiles.resolve_size(args.size)
    p = profiles.get("01", size)
    rows = benchmarks.subset(benchmarks.load("longwrite_ruler"), n=args.prompts or p.n_prompts,
                             seed=args.seed, max_length=p.max_length,
                             languages=tuple(p.languages))
    settings = dict(max_new_tokens=args.max_new_tokens or p.max_new_tokens,
                    temperature=args.temperature, repetition_penalty=1.0, seed=args.seed)
    folder = args.out or paths.run_dir(size.name) / "ruler"
    preds = run(args.model or [size.model], rows, folder, size, **settings)
    for spec, answers in preds.items():
        print(f"{spec} · maximum output length: {max_output_length(answers)} words")
        print(ruler_table(answers).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
