"""Prepacked linear layers (``lw.llm.prepacked``) and the bf16 decoding products
(``lw.llm.attention``) on a CPU, against the kit as it was before them, side by side in one run.

    python benchmarks/bench_prepacked.py [--model smollm2-135m] [--rows 16] [--tokens 256]
        [--dtypes float32,bfloat16]

Part 1, the model's own linear layers (every ``nn.Linear`` of ``--model``, lm_head included)
applied to 1, 4 and 16 rows (a decoding step) and to 2,048 rows (a prefill), as ``nn.Linear``
and prepacked: ms for all layers once, the ratio, the largest difference in output.

Part 2, the kit's engine on ``--rows`` prompts of ~150 to ~1,200 words (rows join and leave at
different lengths, as in the notebooks), every reply forced to ``--tokens`` new tokens, in
three configurations: ``before`` (plain linear layers, packed-SDPA decoding: the kit at
9e8d988), ``+products`` (bf16 decoding steps of >= 4,096 rows x positions through the
products), ``now`` (and prepacked linear layers: the default). Printed: seconds, tokens/s,
ratios to ``before``, and how many greedy replies equal ``before``'s.

Each dtype the CPU runs natively (``--dtypes``): fp32, and bf16 where the CPU has AVX-512 BF16
or AMX. Prepacking's speed depends on the instruction set oneDNN picks (``ONEDNN_MAX_CPU_ISA``
caps it, e.g. ``AVX2`` to see what a CPU without AVX-512 would get).
"""

import argparse
import os
import platform
import time

import torch

import lw
from lw.llm import prepacked
from lw.llm.attention import register

WORDS = ("the harbour light turned slowly over grey water while gulls argued on the pier and "
         "the old keeper wrote his log in a careful hand ").split()


def layers_ms(model, rows: int, repeats: int) -> tuple[float, torch.Tensor]:
    """ms to apply every linear layer of ``model`` to ``rows`` random rows (best of
    ``repeats``), and the last layer's output."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {n: torch.randn(rows, n, generator=torch.Generator().manual_seed(n)).to(model.dtype)
              for n in {m.in_features for m in linears}}
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            for m in linears:
                out = m(inputs[m.in_features])
            best = min(best, time.perf_counter() - start)
    return 1000 * best, out.float()


def prompts(n: int) -> list[str]:
    sizes = [150 + 1050 * i // max(1, n - 1) for i in range(n)]
    return [f"Part {i + 1}. Read this and continue it at length:\n"
            + " ".join(WORDS[(i + j) % len(WORDS)] for j in range(size))
            for i, size in enumerate(sizes)]


def engine_run(chat, attention: str, rows: int, tokens: int):
    chat.model.set_attn_implementation(attention)
    chat.prefixes.clear()
    start = time.perf_counter()
    outs = chat.generate(prompts(rows), max_new_tokens=tokens, min_new_tokens=tokens,
                         temperature=0.0, progress=False)
    seconds = time.perf_counter() - start
    return seconds, sum(o.completion_tokens for o in outs), [o.text for o in outs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=256, help="0 skips part 2")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args(argv)
    dtypes = args.dtypes.split(",")
    why = lw.llm.cpu_bf16()
    if why and "bfloat16" in dtypes:
        dtypes.remove("bfloat16")
    print(f"{args.model}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, torch's CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, ONEDNN_MAX_CPU_ISA="
          f"{os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}"
          + (f"; bf16 skipped ({why})" if why else ""))
    old_attention = register("lw_sdpa_packed", matmul_from=float("inf"))
    for dtype in dtypes:
        plain = lw.llm.load(args.model, batch_size=args.rows, dtype=dtype, prepack=False)
        packed = lw.llm.load(args.model, batch_size=args.rows, dtype=dtype, prepack=True)
        count = sum(isinstance(m, torch.nn.Linear) for m in plain.model.modules())
        print(f"\n{dtype}: the model's {count} linear layers, once each "
              f"({prepacked.packed_layers(packed.model)} packed)")
        print(f"{'rows':>6} {'nn.Linear ms':>12} {'packed ms':>9} {'ratio':>6} {'max diff':>9}")
        for rows in (1, 4, 16, 2048):
            repeats = 2 if rows > 100 else 10
            old, a = layers_ms(plain.model, rows, repeats)
            new, b = layers_ms(packed.model, rows, repeats)
            print(f"{rows:>6} {old:>12.1f} {new:>9.1f} {old / new:>5.2f}x "
                  f"{(a - b).abs().max():>9.3g}", flush=True)
        if not args.tokens:
            continue
        configs = {"before": (plain, old_attention), "+products": (plain, "lw_sdpa"),
                   "now": (packed, "lw_sdpa")}
        if dtype != "bfloat16":  # the products are bf16's: in fp32 "+products" is "before"
            del configs["+products"]
        for chat in (plain, packed):  # warm-up: the first long batch of a model pays extra
            engine_run(chat, "lw_sdpa", 4, 8)
        # Each configuration twice, in one order and then the reverse; the faster run counts.
        runs = {}
        for name in [*configs, *reversed(configs)]:
            chat, attn = configs[name]
            seconds, n, texts = engine_run(chat, attn, args.rows, args.tokens)
            if name not in runs or seconds < runs[name][0]:
                runs[name] = (seconds, n, runs.get(name, (0, 0, texts))[2])
        base = runs["before"]
        print(f"engine, {args.rows} prompts of ~150 to ~1,200 words, {args.tokens} forced "
              f"tokens each (prefill included):")
        for name, (seconds, n, texts) in runs.items():
            same = sum(x == y for x, y in zip(base[2], texts, strict=True))
            print(f"  {name:<10} {seconds:7.1f} s {n / seconds:7.1f} tokens/s "
                  f"{base[0] / seconds:5.2f}x; greedy replies equal to before's {same}/{args.rows}",
                  flush=True)
        plain.close()
        packed.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
