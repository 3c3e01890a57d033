"""``python -m lw.agentwrite``: notebook 02 from the command line: each instruction answered
directly and by AgentWrite (sequential and parallel), then the words each method wrote.

    python -m lw.agentwrite --size small --items 8
"""

import argparse

import lw.llm
from lw import paths, profiles, resources, stats
from lw.agentwrite import long_table, run_settings, summary, write


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lw.agentwrite",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=paths.SIZES, help="default $LW_SIZE, else small")
    ap.add_argument("--model", help="lw.llm.load spec (default the size's)")
    ap.add_argument("--items", type=int, help="how many instructions (default the profile's)")
    ap.add_argument("--min-words", type=int, default=2000)
    ap.add_argument("--prompts", choices=("kit", "official"), default="kit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, help="AgentWrite's (default the profile's)")
    ap.add_argument("--direct-temperature", type=float, help="(default the profile's)")
    ap.add_argument("--repetition-penalty", type=float, help="(default the profile's)")
    ap.add_argument("--words-per-step", type=int, help="scaffolded paragraphs (default the profile's)")
    ap.add_argument("--retry-short", type=int, help="(default the profile's)")
    ap.add_argument("--plan-mode", choices=("auto", "free", "scaffold"))
    ap.add_argument("--direct-max-new-tokens", type=int, help="(default the profile's)")
    ap.add_argument("--out", help="folder (default <run folder>/agentwrite)")
    args = ap.parse_args(argv)
    size = profiles.resolve_size(args.size, model=args.model)
    p = profiles.get("02", size)
    items = resources.load(min_words=args.min_words, max_words=p.max_words,
                           n=args.items or p.n_instructions, seed=args.seed)
    folder = args.out or paths.run_dir(size.name) / "agentwrite"
    settings, direct_settings = run_settings(
        p, prompts=args.prompts, seed=args.seed, temperature=args.temperature,
        direct_temperature=args.direct_temperature, repetition_penalty=args.repetition_penalty,
        words_per_step=args.words_per_step, retry_short=args.retry_short,
        plan_mode=args.plan_mode, direct_max_new_tokens=args.direct_max_new_tokens)
    model = lw.llm.load(size.model, batch_size=size.batch_size, **size.options())
    try:
        records = {"direct": write(model, items, folder, "direct", **direct_settings)}
        for mode in ("sequential", "parallel"):
            records[mode] = write(model, items, folder, mode, **settings)
    finally:
        model.close()
    table = long_table(records)
    print(summary(table).to_string())
    words = table.pivot(index="id", columns="method", values="words")
    for mode in ("sequential", "parallel"):
        ci = stats.paired(words[mode], words["direct"], "ratio", seed=args.seed)
        print(f"{mode} vs direct: {ci['estimate']:.2f}x [{ci['low']:.2f}, {ci['high']:.2f}] "
              f"over {ci['n_prompts']} instructions: {stats.verdict(ci)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
