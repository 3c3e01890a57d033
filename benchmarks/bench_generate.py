"""Throughput of the local transformers backend at batch 1 vs 8, 16, 32, in one run.

    python benchmarks/bench_generate.py [--model smollm2-135m] [--tokens 128]

Every reply is forced to the same length (min_new_tokens == max_new_tokens) so batches compare
fairly; batch 1 generates 8 prompts one at a time. Target (issue 2): batch 8 reaches at least
4x the batch-1 tokens/s on 2 CPU cores with the embedded model.
"""

import argparse
import platform
import time

import torch

import lw

TOPICS = ["the sea", "a city at night", "bees", "winter", "old maps", "trains", "a library",
          "volcanoes", "bread", "the moon", "rivers", "chess", "a forest", "clocks", "rain",
          "bridges"]


def prompts(n: int) -> list[str]:
    return [f"Write a paragraph about {TOPICS[i % len(TOPICS)]} (version {i // len(TOPICS)})."
            for i in range(n)]


def measure(model, batch: int, n: int, tokens: int) -> dict:
    model.batch_size = batch
    start = time.perf_counter()
    outs = model.generate(prompts(n), max_new_tokens=tokens, min_new_tokens=tokens,
                          progress=False)
    seconds = time.perf_counter() - start
    made = sum(o.completion_tokens for o in outs)
    return {"batch": batch, "prompts": n, "tokens": made, "seconds": seconds,
            "tokens_per_s": made / seconds}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per reply")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32])
    args = ap.parse_args(argv)
    model = lw.llm.load(args.model)
    print(f"{args.model} on {model.device}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, {platform.processor() or platform.machine()}")
    measure(model, 1, 1, 8)  # warm-up
    rows = [measure(model, b, max(8, b), args.tokens) for b in args.batches]
    base = rows[0]["tokens_per_s"]
    print(f"\n{'batch':>5} {'prompts':>7} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} "
          f"{'vs batch ' + str(rows[0]['batch']):>11}")
    for r in rows:
        print(f"{r['batch']:>5} {r['prompts']:>7} {r['tokens']:>7} {r['seconds']:>8.1f} "
              f"{r['tokens_per_s']:>9.1f} {r['tokens_per_s'] / base:>10.2f}x")
    by_batch = {r["batch"]: r["tokens_per_s"] for r in rows}
    if 1 in by_batch and 8 in by_batch:
        ratio = by_batch[8] / by_batch[1]
        verdict = "meets" if ratio >= 4 else "MISSES"
        print(f"\nbatch 8 vs batch 1: {ratio:.2f}x ({verdict} the 4x target)")


if __name__ == "__main__":
    main()
