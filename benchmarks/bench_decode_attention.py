"""Decoding steps on a CPU with transformers' SDPA attention and with the kit's ``lw_sdpa``
(``lw.llm.attention``), side by side in one run: three kernels, ``sdpa`` (transformers'),
``packed`` (grouped query heads packed into one SDPA call: ``lw_sdpa`` until 2026-12-03's
fourth session) and ``lw_sdpa`` (packed, and from ``MATMUL_FROM`` rows x positions in bf16 two
matrix products instead of SDPA).

    python benchmarks/bench_decode_attention.py [--model smollm2-135m] [--rows 16]
        [--contexts 500,1500,3000] [--steps 6] [--engine-tokens 256] [--dtypes float32,bfloat16]
        [--no-prepack]

Part 1, one decoding step: ``--rows`` rows whose caches hold each context length (one prefill
from random tokens, copied for each kernel), timed over ``--steps`` steps, unpadded (the case
transformers sends to ``enable_gqa``) and with one row left-padded (the engine's usual case).
Printed: ms per step for each kernel, ``lw_sdpa``'s ratios to the other two, and the largest
logit difference from ``sdpa``. Part 2, the kit's engine: ``--rows`` prompts, first all of one
length (about 1,500 tokens: no padding, rare in the notebooks) and then of lengths spread from
~400 to ~1,500 tokens (the notebooks' case), each reply forced to ``--engine-tokens`` tokens:
tokens/s with each kernel and the share of greedy replies identical to ``sdpa``'s. Each dtype
the CPU runs natively (``--dtypes``): fp32, and bf16 where the CPU has AVX-512 BF16 or AMX.
"""

import argparse
import copy
import platform
import time

import torch

import lw
from lw.llm.attention import MATMUL_FROM, register
from lw.llm.engine import _cache


def prefilled(model, rows: int, context: int, padded: bool):
    """A batch state after prefilling ``rows`` x ``context`` random tokens (one row's first
    quarter left-padded if ``padded``): (cache, mask, next token)."""
    model.set_attn_implementation("sdpa")
    torch.manual_seed(context)
    ids = torch.randint(100, 20000, (rows, context))
    mask = torch.ones_like(ids)
    if padded:
        mask[0, :context // 4] = 0
    cache = _cache(model.config)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
              use_cache=True, logits_to_keep=1, cache=cache)
    return cache, mask, torch.randint(100, 20000, (rows, 1))


def step_ms(model, impl: str, state, steps: int):
    """ms per decoding step from a copy of ``state`` under attention ``impl``, and the last
    step's logits."""
    cache, mask, token = copy.deepcopy(state)
    model.set_attn_implementation(impl)
    with torch.inference_mode():
        start = time.perf_counter()
        for _ in range(steps):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            logits = model(input_ids=token, attention_mask=mask, use_cache=True, cache=cache,
                           position_ids=(mask.cumsum(-1) - 1).clamp(min=0)[:, -1:]).logits
        return 1000 * (time.perf_counter() - start) / steps, logits[:, -1].float()


def long_prompts(n: int, spread: bool) -> list[str]:
    """``n`` prompts of ~1,100 words each, or (``spread``) of 300 to 1,100 words."""
    words = ("the harbour light turned slowly over grey water while gulls argued on the pier "
             "and the old keeper wrote his log in a careful hand ").split()
    sizes = [300 + 800 * i // max(1, n - 1) if spread else 1100 for i in range(n)]
    return [f"Part {i + 1}. Read this and continue it at length:\n"
            + " ".join(words[j % len(words)] for j in range(size))
            for i, size in enumerate(sizes)]


def engine_run(chat, impl: str, rows: int, tokens: int, spread: bool):
    chat.model.set_attn_implementation(impl)
    chat.prefixes.clear()
    start = time.perf_counter()
    outs = chat.generate(long_prompts(rows, spread), max_new_tokens=tokens,
                         min_new_tokens=tokens, temperature=0.0, progress=False)
    seconds = time.perf_counter() - start
    return sum(o.completion_tokens for o in outs) / seconds, [o.text for o in outs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--contexts", default="500,1500,3000")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--engine-tokens", type=int, default=256, help="0 skips part 2")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--no-prepack", action="store_true",
                    help="plain nn.Linear layers (the kit before lw.llm.prepacked)")
    args = ap.parse_args(argv)
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    why = lw.llm.cpu_bf16()
    if why and torch.bfloat16 in dtypes:
        dtypes.remove(torch.bfloat16)
    print(f"{args.model}, {args.rows} rows, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, {platform.processor() or platform.machine()}, torch's CPU "
          f"capability {torch.backends.cpu.get_cpu_capability()}"
          + (f"; bf16 skipped ({why})" if why else ""))
    kernels = {"sdpa": "sdpa", "packed": register("lw_sdpa_packed", matmul_from=float("inf")),
               "lw_sdpa": register()}
    contexts = [int(c) for c in args.contexts.split(",")]
    print(f"lw_sdpa uses the products from {MATMUL_FROM} rows x positions in bf16; linear "
          f"layers {'plain' if args.no_prepack else 'prepacked where they can be'}\n")
    print(f"{'dtype':<9} {'context':>7} {'padded':>6} {'sdpa ms':>8} {'packed ms':>9} "
          f"{'lw_sdpa ms':>10} {'vs sdpa':>7} {'vs packed':>9} {'max logit diff':>14}")
    for dtype in dtypes:
        chat = lw.llm.load(args.model, batch_size=args.rows, dtype=dtype,
                           prepack=False if args.no_prepack else None)
        for context in contexts:
            for padded in (False, True):
                state = prefilled(chat.model, args.rows, context, padded)
                step_ms(chat.model, "sdpa", state, 1)  # warm-up
                ms, logits = {}, {}
                for kernel, impl in kernels.items():
                    ms[kernel], logits[kernel] = step_ms(chat.model, impl, state, args.steps)
                diff = (logits["lw_sdpa"] - logits["sdpa"]).abs().max()
                print(f"{str(dtype)[6:]:<9} {context:>7} {padded!s:>6} {ms['sdpa']:>8.1f} "
                      f"{ms['packed']:>9.1f} {ms['lw_sdpa']:>10.1f} "
                      f"{ms['sdpa'] / ms['lw_sdpa']:>6.2f}x {ms['packed'] / ms['lw_sdpa']:>8.2f}x "
                      f"{diff:>14.3g}", flush=True)
        for spread in (False, True) if args.engine_tokens else ():
            speed, texts = {}, {}
            for kernel, impl in kernels.items():
                speed[kernel], texts[kernel] = engine_run(chat, impl, args.rows,
                                                          args.engine_tokens, spread)
            same = {k: sum(x == y for x, y in zip(texts["sdpa"], t, strict=True))
                    for k, t in texts.items()}
            shape = "~400 to ~1,500 tokens" if spread else "~1,500 tokens each"
            print(f"{str(dtype)[6:]:<9} engine, {args.rows} prompts of {shape} + "
                  f"{args.engine_tokens} forced, tokens/s: sdpa {speed['sdpa']:.1f}, packed "
                  f"{speed['packed']:.1f}, lw_sdpa {speed['lw_sdpa']:.1f} = "
                  f"{speed['lw_sdpa'] / speed['sdpa']:.2f}x sdpa, "
                  f"{speed['lw_sdpa'] / speed['packed']:.2f}x packed; greedy replies identical to "
                  f"sdpa's: packed {same['packed']}/{args.rows}, lw_sdpa {same['lw_sdpa']}/"
                  f"{args.rows}", flush=True)
        chat.model.set_attn_implementation(kernels["lw_sdpa"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
