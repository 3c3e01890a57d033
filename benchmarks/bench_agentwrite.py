"""AgentWrite throughput: the original scripts' way vs the kit's batched runner, in one run.

    python benchmarks/bench_agentwrite.py [--model smollm2-135m] [--items 8] [--words 800]

(a) one item at a time, one request at a time (batch 1), as the official AgentWrite scripts do;
(b) all items together, each round of paragraphs as one batched call. Same instructions, model
and settings (scaffolded plans, sequential writing). Prints generated tokens, seconds and
tokens/s for each, and the ratio. Target (issue 3): (b) at least 4x faster on 2 CPU cores.
"""

import argparse
import tempfile
import time
from pathlib import Path

import lw
from lw.agentwrite import AgentWriteConfig, AgentWriter


def run(model, items, cfg, path: Path, batch: int, one_by_one: bool) -> dict:
    model.batch_size = batch
    start = time.perf_counter()
    if one_by_one:
        records = [r for it in items for r in AgentWriter(model, path, cfg).run([it],
                                                                                progress=False)]
    else:
        records = AgentWriter(model, path, cfg).run(items, progress=False)
    seconds = time.perf_counter() - start
    tokens = sum(st["completion_tokens"] for r in records for st in r.get("steps", []))
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "words": sum(r["words"] for r in records),
            "failed": sum(r["status"] != "done" for r in records)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--words", type=int, default=800, help="target words per item")
    ap.add_argument("--batch", type=int, default=8, help="batch size of the kit's runner")
    args = ap.parse_args(argv)
    model = lw.llm.load(args.model)
    rows = lw.instructions.load(min_words=1000, n=args.items, seed=0)
    items = [{"id": r["id"], "instruction": r["prompt"], "target_words": args.words}
             for r in rows]
    cfg = AgentWriteConfig(plan_mode="scaffold", scaffold_words_per_step=400, temperature=0.8,
                           repetition_penalty=1.1, seed=0)
    print(f"{args.model}: {len(items)} instructions x {args.words} words, "
          f"{max(1, round(args.words / 400))} paragraphs each, sequential mode")
    with tempfile.TemporaryDirectory() as tmp:
        a = run(model, items, cfg, Path(tmp) / "a.jsonl", batch=1, one_by_one=True)
        b = run(model, items, cfg, Path(tmp) / "b.jsonl", batch=args.batch, one_by_one=False)
    print(f"\n{'way':<34} {'tokens':>7} {'words':>7} {'seconds':>8} {'tokens/s':>9} {'failed':>6}")
    for name, r in [("(a) one item, one request at a time", a),
                    (f"(b) kit runner, batch {args.batch}", b)]:
        print(f"{name:<34} {r['tokens']:>7} {r['words']:>7} {r['seconds']:>8.1f} "
              f"{r['tokens_per_s']:>9.1f} {r['failed']:>6}")
    ratio = b["tokens_per_s"] / a["tokens_per_s"]
    print(f"\n(b) vs (a): {ratio:.2f}x tokens/s, {a['seconds'] / b['seconds']:.2f}x wall time "
          f"({'meets' if ratio >= 4 else 'MISSES'} the 4x target)")


if __name__ == "__main__":
    main()
