"""AgentWrite's two methods one after the other vs together on one model, in one run.

    python benchmarks/bench_agentwrite_together.py [--size small] [--items 8] [--words 1200]

Notebook 02 wrote the sequential method, then the parallel one (until 2026-12-03). Sequential
keeps one request per item in flight, since each paragraph waits for the one before, so with 8
items a 16-row batch runs half empty. ``lw.agentwrite.write_together`` sends both methods'
requests through one ``model.stream``: the parallel paragraphs fill the idle rows, and the
engine puts an item's next paragraph ahead of work not yet started, so the sequential chains
are not slowed by waiting in the queue.

Same instructions (the kit's, as notebook 02 picks them, each asking ``--words`` words unless
``--words 0``), the size's model, options, batch and notebook 02's AgentWrite settings; both
ways start with an empty prefix cache. Prints seconds, completion tokens and tokens/s of each,
the wall-time ratio, and how many records came out word for word the same (in bf16 a reply
depends a little on its batch mates, so some differ; fp32 on a tiny model would not).
"""

import argparse
import tempfile
import time
from pathlib import Path

import lw
from lw.agentwrite import run_settings, write, write_together
from lw.report import _cpu  # the CPU's name and whether it has bf16 instructions


def tokens(records) -> int:
    return sum(st["completion_tokens"] for r in records for st in r.get("steps", []))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="small")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--words", type=int, default=1200,
                    help="words each instruction asks for (0: the instructions' own, 2,000-3,000)")
    args = ap.parse_args(argv)
    size = lw.profiles.resolve_size(args.size)
    p = lw.profiles.get("02", size)
    items = lw.resources.load(min_words=2000, max_words=p.max_words, n=args.items, seed=0)
    if args.words:
        items = [{**it, "length": args.words} for it in items]
    settings, _ = run_settings(p)
    model = lw.llm.load(size.model, batch_size=size.batch_size, **size.options())
    print(f"{size.model} on {_cpu()}, batch {size.batch_size}, "
          f"{model.info().get('dtype')}: {len(items)} instructions "
          f"x {sorted({it['length'] for it in items})} words, {p.words_per_step} words a paragraph")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model.prefixes.clear()
        start = time.perf_counter()
        apart = {m: write(model, items, Path(tmp) / "apart", m, progress=False, **settings)
                 for m in ("sequential", "parallel")}
        results["one after the other"] = (time.perf_counter() - start, apart)
        model.prefixes.clear()
        start = time.perf_counter()
        together = write_together(model, items, Path(tmp) / "together", progress=False, **settings)
        results["together"] = (time.perf_counter() - start, together)
    model.close()
    print(f"\n{'way':<22} {'seconds':>8} {'tokens':>7} {'tokens/s':>9} {'words seq':>10} "
          f"{'words par':>10} {'failed':>6}")
    for name, (seconds, recs) in results.items():
        n = tokens(recs["sequential"]) + tokens(recs["parallel"])
        words = {m: sum(r["words"] for r in recs[m]) / len(recs[m]) for m in recs}
        failed = sum(r["status"] != "done" for m in recs for r in recs[m])
        print(f"{name:<22} {seconds:>8.1f} {n:>7} {n / seconds:>9.1f} {words['sequential']:>10.0f} "
              f"{words['parallel']:>10.0f} {failed:>6}")
    (t_apart, apart), (t_together, together) = results.values()
    same = sum(a["response"] == b["response"] for m in apart
               for a, b in zip(apart[m], together[m], strict=True))
    print(f"\ntogether vs one after the other: {t_apart / t_together:.2f}x wall time; "
          f"{same} of {2 * len(items)} records word for word the same")


if __name__ == "__main__":
    main()
