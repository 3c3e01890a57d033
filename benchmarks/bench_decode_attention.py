"""Decoding steps on a CPU with transformers' SDPA attention and with the kit's ``lw_sdpa``
(grouped query heads packed, ``lw.llm.attention``), side by side in one run.

    python benchmarks/bench_decode_attention.py [--model smollm2-135m] [--rows 16]
        [--contexts 250,1000,2000,3500] [--steps 8] [--engine-tokens 256]

Part 1, one decoding step: ``--rows`` rows whose caches hold each context length (prefilled
from the same random tokens for both attentions), timed over ``--steps`` steps, unpadded (the
case transformers sends to ``enable_gqa``) and with one row left-padded (the case it already
packs). Printed: ms per step, the ratio, and the largest logit difference between the two.
Part 2, the kit's engine: ``--rows`` prompts, first all of one length (about 1,500 tokens:
no padding, rare in the notebooks) and then of lengths spread from ~400 to ~1,500 tokens (the
notebooks' case: rows of different lengths left-padded in one batch), each reply forced to
``--engine-tokens`` tokens: tokens/s with each attention and the share of greedy replies that
come out identical. Each dtype the CPU runs natively (``--dtypes``): fp32, and bf16 where the
CPU has AVX-512 BF16 or AMX.
"""

import argparse
import platform
import time

import torch

import lw
from lw.llm.attention import register
from lw.llm.engine import _cache


def step_ms(model, impl: str, rows: int, context: int, steps: int, padded: bool):
    """ms per decoding step at ``context`` cached tokens, and the last step's logits."""
    model.set_attn_implementation(impl)
    torch.manual_seed(context)
    ids = torch.randint(100, 20000, (rows, context))
    mask = torch.ones_like(ids)
    if padded:
        mask[0, :context // 4] = 0
    cache = _cache(model.config)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
              use_cache=True, logits_to_keep=1, cache=cache)
        token = torch.randint(100, 20000, (rows, 1))
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
    ap.add_argument("--contexts", default="250,1000,2000,3500")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--engine-tokens", type=int, default=256, help="0 skips part 2")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args(argv)
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    why = lw.llm.cpu_bf16()
    if why and torch.bfloat16 in dtypes:
        dtypes.remove(torch.bfloat16)
    print(f"{args.model}, {args.rows} rows, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, {platform.processor() or platform.machine()}, torch's CPU "
          f"capability {torch.backends.cpu.get_cpu_capability()}"
          + (f"; bf16 skipped ({why})" if why else ""))
    name = register()
    contexts = [int(c) for c in args.contexts.split(",")]
    print(f"\n{'dtype':<9} {'context':>7} {'padded':>6} {'sdpa ms':>8} {'lw_sdpa ms':>10} "
          f"{'ratio':>6} {'max logit diff':>14}")
    for dtype in dtypes:
        chat = lw.llm.load(args.model, batch_size=args.rows, dtype=dtype)
        for context in contexts:
            for padded in (False, True):
                step_ms(chat.model, "sdpa", args.rows, 32, 2, padded)  # warm-up
                old, a = step_ms(chat.model, "sdpa", args.rows, context, args.steps, padded)
                new, b = step_ms(chat.model, name, args.rows, context, args.steps, padded)
                print(f"{str(dtype)[6:]:<9} {context:>7} {padded!s:>6} {old:>8.1f} {new:>10.1f} "
                      f"{old / new:>5.2f}x {(a - b).abs().max():>14.3g}", flush=True)
        for spread in (False, True) if args.engine_tokens else ():
            old, texts_old = engine_run(chat, "sdpa", args.rows, args.engine_tokens, spread)
            new, texts_new = engine_run(chat, name, args.rows, args.engine_tokens, spread)
            same = sum(x == y for x, y in zip(texts_old, texts_new, strict=True))
            shape = "~400 to ~1,500 tokens" if spread else "~1,500 tokens each"
            print(f"{str(dtype)[6:]:<9} engine, {args.rows} prompts of {shape} + "
                  f"{args.engine_tokens} forced: sdpa {old:.1f} tokens/s, lw_sdpa {new:.1f} "
                  f"= {new / old:.2f}x; greedy replies identical {same}/{args.rows}", flush=True)
        chat.model.set_attn_implementation(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
