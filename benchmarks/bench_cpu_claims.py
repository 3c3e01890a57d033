"""What the faster CPU routes change in the numbers the claims read (issue 23), beside what a
second sampling seed changes in fp32, measured in one run.

    python benchmarks/bench_cpu_claims.py [--setting ruler|longbench] [--routes fp32 bf16 int8]
                                          [--prompts 8] [--tokens 1024] [--seeds 0 1]

Settings:
* ``ruler`` (default): notebook 01's at `small`: English LongWrite-Ruler prompts asking for up
  to 5,000 words, temperature 0.5 and no repetition penalty (the paper's), where a weak model
  loops soonest, so the route's effect on usable words shows most.
* ``longbench``: notebook 03's prompts (English LongBench-Write, up to 2,000 words) with the
  kit's repetition penalty 1.1.

The same prompts are answered by SmolLM2-135M in fp32 (the engine as it was), bf16 (what `small`
uses on a CPU with AVX-512 BF16 or AMX; skipped, and said, elsewhere) and int8 (``quantize=
"int8"``), each with the same seeds. Printed per route: mean words, usable words (before the
text degenerates), S_l, the share cut by the budget, tokens/s (a speed figure only where nothing
else ran: ``bench_cpu_routes.py`` is the clean one); then each route vs fp32 as paired 95%
intervals over prompts x seeds, and fp32's second seed vs its first (how far a reseed alone
moves the same numbers).
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

SETTINGS = {
    "ruler": dict(benchmark="longwrite_ruler", max_length=5000, repetition_penalty=1.0),
    "longbench": dict(benchmark="longbench_write_en", max_length=2000, repetition_penalty=1.1),
}
ROUTES = {"fp32": {}, "bf16": {"dtype": "bfloat16"}, "int8": {"quantize": "int8"}}


def run(model, rows, folder, tokens: int, seed: int, penalty: float):
    settings = dict(max_new_tokens=tokens, temperature=0.5, repetition_penalty=penalty, seed=seed)
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
    ap.add_argument("--setting", choices=SETTINGS, default="ruler")
    ap.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    setting = SETTINGS[args.setting]
    rows = benchmarks.subset(benchmarks.load(setting["benchmark"]), n=args.prompts, seed=0,
                             max_length=setting["max_length"], languages=("en",))
    print(f"smollm2-135m, {len(rows)} {setting['benchmark']} prompts asking for "
          f"{min(r['length'] for r in rows)}-{max(r['length'] for r in rows)} words, "
          f"{args.tokens} tokens, T 0.5, repetition penalty {setting['repetition_penalty']}, "
          f"seeds {args.seeds}, batch {args.batch}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    runs, skipped = {}, {}
    routes = ["fp32", *[r for r in args.routes if r != "fp32"]]
    with tempfile.TemporaryDirectory() as folder:
        for route in routes:
            if route == "bf16" and llm.cpu_bf16() is not None:
                skipped[route] = llm.cpu_bf16()
                continue
            model = llm.load("smollm2-135m", batch_size=args.batch, **ROUTES[route])
            runs[route] = [run(model, rows, folder, args.tokens, s, setting["repetition_penalty"])
                           for s in args.seeds]
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
    for route, why in skipped.items():
        print(f"{route:<6} skipped: {why}")
    print()
    for value, statistic in (("words", "ratio"), ("usable_words", "ratio"), ("S_l", "difference")):
        for route in [r for r in runs if r != "fp32"]:
            a, b = stats.paired_values([ps for ps, _ in runs[route]],
                                       [ps for ps, _ in runs["fp32"]], value)
            ci = stats.paired(a, b, statistic)
            print(f"{route} vs fp32, {value} {statistic}: {ci['estimate']:.2f} [{ci['low']:.2f}, "
                  f"{ci['high']:.2f}] over {ci['n_prompts']} prompts x {len(args.seeds)} seeds")
        if len(args.seeds) > 1:
            a, b = stats.paired_values(runs["fp32"][1][0], runs["fp32"][0][0], value)
            re = stats.paired(a, b, statistic)
            print(f"fp32 seed {args.seeds[1]} vs seed {args.seeds[0]}, {value} {statistic}: "
                  f"{re['estimate']:.2f} [{re['low']:.2f}, {re['high']:.2f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
