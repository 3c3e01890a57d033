"""``python -m lw.data``: notebook 04 from the command line: long-output SFT data written by
AgentWrite from instructions, filtered, saved with its card (the profile's defaults at the size).

    python -m lw.data --size small --source kit --items 8
"""

import argparse

import lw.llm
from lw import agentwrite, data, paths, profiles


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lw.data", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=paths.SIZES, help="default $LW_SIZE, else small")
    ap.add_argument("--model", help="the writer's lw.llm.load spec (default the size's)")
    ap.add_argument("--source", default="kit",
                    help='"kit", "hub:THUDM/LongWriter-6k" or a JSONL of instructions')
    ap.add_argument("--items", type=int, help="how many instructions (default the profile's)")
    ap.add_argument("--mode", choices=("parallel", "sequential"), default="parallel")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="longwriter-kit", help="name of the saved data set")
    ap.add_argument("--out", help="folder (default <run folder>/data)")
    args = ap.parse_args(argv)
    size = profiles.resolve_size(args.size, model=args.model)
    p = profiles.get("04", size)
    rows = data.instructions(args.source, n=args.items or p.n_instructions,
                             min_words=p.min_words, max_words=p.max_words, seed=args.seed)
    config = agentwrite.AgentWriteConfig(
        mode=args.mode, plan_mode=p.plan_mode, temperature=0.8, repetition_penalty=1.1,
        seed=args.seed, scaffold_words_per_step=p.words_per_step, retry_short=1,
        tokens_per_word=p.tokens_per_word, plan_max_new_tokens=p.plan_max_new_tokens)
    filters = data.Filters(min_ratio=p.min_ratio, max_repetition=p.max_repetition,
                           min_words=p.min_answer_words)
    model = lw.llm.load(size.model, batch_size=size.batch_size, **size.options())
    try:
        built = data.build(model, rows, args.out or paths.run_dir(size.name) / "data", config,
                           filters, name=args.name)
    finally:
        model.close()
    print(f"kept {len(built.kept)} of {len(rows)}; rejected: {built.reasons or 'none'}")
    print(f"data: {built.jsonl}\ncard: {built.card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
