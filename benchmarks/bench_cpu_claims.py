"""What int8 generation changes in the numbers the claims read (issue 23), beside what a second
sampling seed changes in fp32, measured in one run.

    python benchmarks/bench_cpu_claims.py [--prompts 16] [--tokens 1024] [--seeds 0 1]

The same LongBench-Write prompts (English, stratified, as notebook 03 takes them at `small`) are
answered by SmolLM2-135M in fp32 (today's engine) and with ``quantize="int8"`` (what `small`
uses on a CPU), each with the same sampling seeds, temperature 0.5 and repetition penalty 1.1.
Printed per route: mean words, usable words (before the text degenerates), S_l, the share cut by
the budget, tokens/s; then int8 vs fp32 as paired 95% intervals over prompts x seeds, and fp32
seed 1 vs fp32 seed 0 over prompts (how far a reseed alone moves the same numbers).
"""

import argparse
import platform
import tempfile
import time

import torch

from lw import llm, stats
from lw.generation import predict
from lw.paper import benchmarks
from lw.records import answer_length_score, answer_usable_words
from lw.store import keyed_path


def run(model, rows, folder, tokens: int, seed: int) -> tuple[list[dict], float]:
    settings = dict(max_new_tokens=tokens, temperature=0.5, repetition_penalty=1.1, seed=seed)
    start = time.perf_counter()
    preds = predict(model, rows, keyed_path(folder, "preds", model=model, **settings),
                    progress=False, **settings)
    seconds = time.perf_counter() - start
    for p in preds:
        p["S_l"] = answer_length_score(p)
        p["usable_words"] = answer_usable_words(p)
    return preds, sum(p.get("completion_tokens", 0) for p in preds) / seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    rows = benchmarks.subset(benchmarks.load("longbench_write_en"), n=args.prompts, seed=0,
                             max_length=2000)
    print(f"smollm2-135m, {len(rows)} LongBench-Write prompts asking for "
          f"{min(r['length'] for r in rows)}-{max(r['length'] for r in rows)} words, "
          f"{args.tokens} tokens, seeds {args.seeds}, batch {args.batch}; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for route, options in (("fp32", {}), ("int8", {"quantize": "int8"})):
            model = llm.load("smollm2-135m", batch_size=args.batch, **options)
            runs[route] = [run(model, rows, folder, args.tokens, s) for s in args.seeds]
            model.close()
            print(f"{route}: done", flush=True)
    print(f"\n{'route':<6} {'words':>7} {'usable':>7} {'S_l':>6} {'cut':>5} {'tokens/s':>9}")
    for route, per_seed in runs.items():
        preds = [p for ps, _ in per_seed for p in ps]
        def mean(k, preds=preds):
            return sum(p[k] for p in preds) / len(preds)

        cut = sum(p.get("truncated", False) for p in preds) / len(preds)
        speed = sum(s for _, s in per_seed) / len(per_seed)
        print(f"{route:<6} {mean('words'):>7.0f} {mean('usable_words'):>7.0f} {mean('S_l'):>6.1f} "
              f"{cut:>5.0%} {speed:>9.1f}")
    print()
    for value, statistic in (("words", "ratio"), ("usable_words", "ratio"), ("S_l", "difference")):
        a, b = stats.paired_values([ps for ps, _ in runs["int8"]],
                                   [ps for ps, _ in runs["fp32"]], value)
        ci = stats.paired(a, b, statistic)
        line = (f"int8 vs fp32, {value} {statistic}: {ci['estimate']:.2f} [{ci['low']:.2f}, "
                f"{ci['high']:.2f}] over {ci['n_prompts']} prompts x {len(args.seeds)} seeds")
        if len(args.seeds) > 1:
            a, b = stats.paired_values(runs["fp32"][1][0], runs["fp32"][0][0], value)
            re = stats.paired(a, b, statistic)
            line += (f"; fp32 seed {args.seeds[1]} vs seed {args.seeds[0]}: {re['estimate']:.2f} "
                     f"[{re['low']:.2f}, {re['high']:.2f}]")
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
