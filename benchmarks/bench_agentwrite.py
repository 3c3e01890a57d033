"""AgentWrite throughput: the original scripts' way vs the kit's batched runner, in one run.

    python benchmarks/bench_agentwrite.py [--model smollm2-135m] [--items 8] [--words 800]

(a) one item at a time, one request at a time, as the official AgentWrite scripts do, each
request a call to transformers' own ``generate``;
(a') the same order of work on the kit's engine (``lw.llm.engine``), to show what the engine
alone changes;
(b) the kit's runner: all items together on the continuous-batching engine, each item's next
paragraph starting the moment its previous one ends.
Same instructions, model and settings (scaffolded plans, sequential writing). Prints generated
tokens, seconds and tokens/s for each, and the ratio (b)/(a). Target (issue 3): (b) at least 4x
faster on 2 CPU cores. The figures also print the two ceilings of any batching gain on this
machine: decoding speed at batch 8 over batch 1 (at short and at AgentWrite-length contexts) and
prefill speed, which batching does not change.
"""

import argparse
import tempfile
import time
from pathlib import Path

import lw
from lw.agentwrite import AgentWriteConfig, AgentWriter


def run(model, items, cfg, path: Path, batch: int, one_by_one: bool, engine: str) -> dict:
    model.batch_size, model.engine = batch, engine
    model.prefixes.clear()  # no way reuses another's caches (they write the same prompts)
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
    ap.add_argument("--step-words", type=int, default=400, help="words per scaffolded paragraph")
    ap.add_argument("--skip-engine-alone", action="store_true", help="skip (a')")
    ap.add_argument("--batch", type=int, default=8, help="batch size of the kit's runner")
    args = ap.parse_args(argv)
    model = lw.llm.load(args.model)
    rows = lw.data.instructions("kit", min_words=1000, n=args.items, seed=0)
    items = [{"id": r["id"], "instruction": r["prompt"], "target_words": args.words}
             for r in rows]
    cfg = AgentWriteConfig(plan_mode="scaffold", scaffold_words_per_step=args.step_words,
                           temperature=0.8, repetition_penalty=1.1, seed=0)
    print(f"{args.model}: {len(items)} instructions x {args.words} words, "
          f"{max(1, round(args.words / args.step_words))} paragraphs each, sequential mode")
    with tempfile.TemporaryDirectory() as tmp:
        a = run(model, items, cfg, Path(tmp) / "a.jsonl", 1, True, "hf")
        a2 = None if args.skip_engine_alone else run(model, items, cfg, Path(tmp) / "a2.jsonl",
                                                     1, True, "continuous")
        b = run(model, items, cfg, Path(tmp) / "b.jsonl", args.batch, False, "continuous")
    print(f"\n{'way':<40} {'tokens':>7} {'words':>7} {'seconds':>8} {'tokens/s':>9} {'failed':>6}")
    for name, r in [("(a) one at a time, transformers generate", a),
                    ("(a') one at a time, kit engine", a2),
                    (f"(b) kit runner, batch {args.batch}", b)]:
        if r is None:
            continue
        print(f"{name:<40} {r['tokens']:>7} {r['words']:>7} {r['seconds']:>8.1f} "
              f"{r['tokens_per_s']:>9.1f} {r['failed']:>6}")
    ceilings(model, args.batch)
    ratio = b["tokens_per_s"] / a["tokens_per_s"]
    print(f"\n(b) vs (a): {ratio:.2f}x tokens/s, {a['seconds'] / b['seconds']:.2f}x wall time "
          f"({'meets' if ratio >= 4 else 'MISSES'} the 4x target)")


def ceilings(model, batch: int) -> None:
    """Decode tokens/s at batch 1 and ``batch`` for short and long prompts; prefill tokens/s."""
    model.engine = "continuous"
    model.prefixes.clear()
    saved, model.prefixes.max_bytes = model.prefixes.max_bytes, 0  # measure whole prefills
    filler = " ".join(["The river runs past the old mill and the town."] * 110)
    print(f"\nceilings on this machine (kit engine, {batch} prompts, 64 forced new tokens):")
    for label, extra in [("short prompt", ""), ("~1,250-token prompt", filler)]:
        prompts = [f"Write about topic {i}. {extra}" for i in range(batch)]
        speeds = {}
        for b in (1, batch):
            model.batch_size = b
            start = time.perf_counter()
            model.generate(prompts[:1], max_new_tokens=1, progress=False)
            prefill = time.perf_counter() - start
            start = time.perf_counter()
            outs = model.generate(prompts[:b], max_new_tokens=64, min_new_tokens=64,
                                  progress=False)
            seconds = time.perf_counter() - start - b * prefill  # decoding only
            speeds[b] = sum(o.completion_tokens for o in outs) / seconds
        n = outs[0].prompt_tokens
        print(f"  {label:<20} ({n:>4} tokens): decode batch 1 {speeds[1]:6.1f} tok/s, batch "
              f"{batch} {speeds[batch]:6.1f} tok/s = {speeds[batch] / speeds[1]:.2f}x; prefill "
              f"{n / prefill:6.0f} tok/s")
    model.prefixes.max_bytes = saved


if __name__ == "__main__":
    main()
