"""Generation on CPU, today's fp32 engine beside faster routes, measured side by side in one run
(issue 23): tokens/s at notebook 05's shape and how far each route's greedy text agrees with
fp32's.

    python benchmarks/bench_cpu_routes.py [--model smollm2-135m] [--rows 8] [--tokens 512]

Routes (each on the kit's continuous engine, the same prompts, every reply forced to the same
length so the routes do the same work):
* ``fp32``: today's default, batch ``--rows``.
* ``fp32 xB``: the same at twice the batch (twice the prompts): what a larger batch buys.
* ``bf16``: bf16 weights and compute, where the CPU has BF16 instructions (AVX-512 BF16 or AMX,
  read from /proc/cpuinfo); skipped, and said, where it has not (bf16 on AVX2 is emulated).
* ``int8``: torch's dynamic int8 quantisation of every ``nn.Linear`` (int8 weights, fp32
  activations quantised per batch), on any x86 CPU.
* ``bf16 xB``, ``int8 xB``: those at twice the batch.

Agreement: the same prompts decoded greedily for ``--agree-tokens`` tokens by fp32 and by the
route; printed are the share of replies identical to fp32's and the mean share of tokens before
the first difference. Speed ratios are against ``fp32`` measured in the same run.
"""

import argparse
import platform
import time
from pathlib import Path

import torch

import lw

TOPICS = ["the sea", "a city at night", "bees", "winter", "old maps", "trains", "a library",
          "volcanoes", "bread", "the moon", "rivers", "chess", "a forest", "clocks", "rain",
          "bridges", "glass", "salt", "kites", "lighthouses", "ferns", "owls", "canals", "ink"]


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def bf16_native(flags: set[str]) -> str | None:
    """Why bf16 compute would be emulated here, or None when the CPU has it."""
    if {"avx512_bf16"} & flags or {"amx_bf16"} & flags:
        return None
    return "this CPU has neither AVX-512 BF16 nor AMX: bf16 would be emulated"


def prompts(n: int) -> list[str]:
    return [f"Write a long essay about {TOPICS[i % len(TOPICS)]} (part {i // len(TOPICS) + 1})."
            for i in range(n)]


def timed(model, n: int, tokens: int) -> dict:
    start = time.perf_counter()
    outs = model.generate(prompts(n), max_new_tokens=tokens, min_new_tokens=tokens,
                          temperature=0.0, progress=False)
    seconds = time.perf_counter() - start
    made = sum(o.completion_tokens for o in outs)
    return {"tokens": made, "seconds": seconds, "tokens_per_s": made / seconds}


def greedy_ids(model, n: int, tokens: int) -> list[list[int]]:
    outs = model.generate(prompts(n), max_new_tokens=tokens, temperature=0.0, progress=False)
    return [model.tokenizer(o.text, add_special_tokens=False)["input_ids"] for o in outs]


def agreement(ref: list[list[int]], got: list[list[int]]) -> dict:
    same, prefix = 0, []
    for a, b in zip(ref, got, strict=True):
        same += a == b
        k = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        prefix.append(k / max(1, len(a)))
    return {"identical": same / len(ref), "prefix": sum(prefix) / len(prefix)}


def routes(spec: str, base, flags: set[str], rows: int):
    """(name, model or None, batch, why skipped); each route loads its own copy, so the
    engine's caches are made for that copy's dtype."""
    yield "fp32", base, rows, None
    yield f"fp32 x{2 * rows}", base, 2 * rows, None
    why = bf16_native(flags)
    if why is None:
        half = lw.llm.load(spec, batch_size=rows, dtype=torch.bfloat16)
        yield "bf16", half, rows, None
        yield f"bf16 x{2 * rows}", half, 2 * rows, None
    else:
        yield "bf16", None, rows, why
    try:
        quant = lw.llm.load(spec, batch_size=rows)
        # In place: the engine holds this module.
        torch.ao.quantization.quantize_dynamic(quant.model, {torch.nn.Linear},
                                               dtype=torch.qint8, inplace=True)
        yield "int8", quant, rows, None
        yield f"int8 x{2 * rows}", quant, 2 * rows, None
    except Exception as exc:  # noqa: BLE001 - a route this torch cannot build is reported
        yield "int8", None, rows, f"quantize_dynamic failed: {exc!r:.120}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=8, help="batch (notebook 05: 8-16)")
    ap.add_argument("--tokens", type=int, default=512, help="new tokens per reply")
    ap.add_argument("--agree-tokens", type=int, default=128)
    args = ap.parse_args(argv)
    flags = cpu_flags()
    base = lw.llm.load(args.model, batch_size=args.rows)
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
           if f in flags]
    print(f"{args.model} on {base.device}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, {platform.processor() or platform.machine()}; CPU has "
          f"{', '.join(isa) or 'none of AVX2/AVX-512/AMX'}")
    base.generate(prompts(1), max_new_tokens=4, progress=False)  # warm-up
    ref = greedy_ids(base, args.rows, args.agree_tokens)
    results = []
    for name, model, batch, why in routes(args.model, base, flags, args.rows):
        if model is None:
            results.append({"route": name, "skipped": why})
            print(f"{name}: skipped ({why})", flush=True)
            continue
        model.batch_size = batch
        model.generate(prompts(1), max_new_tokens=4, progress=False)  # warm-up
        row = {"route": name, "batch": batch, **timed(model, batch, args.tokens)}
        model.batch_size = args.rows
        row.update(agreement(ref, greedy_ids(model, args.rows, args.agree_tokens)))
        results.append(row)
        print(f"{name}: {row['tokens_per_s']:.1f} tokens/s", flush=True)
    base_tps = results[0]["tokens_per_s"]
    print(f"\n{'route':<10} {'batch':>5} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} "
          f"{'vs fp32':>8} {'same text':>10} {'same prefix':>12}")
    for r in results:
        if "skipped" in r:
            print(f"{r['route']:<10} skipped: {r['skipped']}")
            continue
        print(f"{r['route']:<10} {r['batch']:>5} {r['tokens']:>7} {r['seconds']:>8.1f} "
              f"{r['tokens_per_s']:>9.1f} {r['tokens_per_s'] / base_tps:>7.2f}x "
              f"{r['identical']:>9.0%} {r['prefix']:>11.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
