"""Decoding steps on a CPU with transformers' SDPA attention and with the kit's own
(``lw.llm.attention``), side by side in one run: three kernels, ``sdpa`` (transformers'),
``lw_sdpa`` (grouped query heads packed, and from ``MATMUL_FROM`` rows x positions in bf16 two
matrix products instead of SDPA: the kit until 2026-12-03's seventh session) and ``lw_kernel``
(bf16 steps through the kit's compiled kernel, ``lw.llm.cpu_kernel``; elsewhere as ``lw_sdpa``).
Before that session the middle column was ``packed`` (packed SDPA only); ``--packed`` adds it.

    python benchmarks/bench_decode_attention.py [--model smollm2-135m] [--rows 16]
        [--contexts 500,1500,3000] [--steps 6] [--engine-tokens 256] [--dtypes float32,bfloat16]
        [--no-prepack] [--packed]

Part 1, one decoding step: ``--rows`` rows whose caches hold each context length (one prefill
from random tokens, copied for each kernel), timed over ``--steps`` steps, unpadded (the case
transformers sends to ``enable_gqa``) and with one row left-padded (the engine's usual case).
Printed: ms per step for each kernel, the last column's ratios to the other two, and its largest
logit difference from ``sdpa``. Part 2, the kit's engine: ``--rows`` prompts, first all of one
length (about 1,500 tokens: no padding, rare in the notebooks) and then of lengths spread from
~400 to ~1,500 tokens (the notebooks' case), each reply forced to ``--engine-tokens`` tokens:
tokens/s with each kernel and the share of greedy replies identical to ``sdpa``'s. Each dtype
the CPU runs natively (``--dtypes``): fp32, and bf16 where the CPU has AVX-512 BF16 or AMX.
Part 3 (``--precision``, bf16): real text (this repository's README and docs/RESULTS.md as one
stream), 3 rows of ``--precision-context`` cached tokens then 48 teacher-forced decoding steps
with each kit kernel, against one fp32 forward over the same tokens: mean KL(fp32 || kernel),
the largest logit error, top-1 agreement with fp32 and between the kernels.
"""

import argparse
import copy
import platform
import time

import torch

import lw
from lw.llm import cpu_kernel, prepacked
from lw.llm.attention import KERNEL_NAME, MATMUL_FROM, register
from lw.llm.engine import _cache

_KERNEL = {}  # the compiled module, for the few-row linear layers


def use(model, spec) -> None:
    """Put ``model`` on a column's kernels: ``(attention implementation, few-row linears)``."""
    impl, rows = spec
    model.set_attn_implementation(impl)
    if rows:
        prepacked.use_rows_kernel(model, _KERNEL["module"])
    else:
        prepacked.drop_rows_kernel(model)


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


def step_ms(model, spec, state, steps: int):
    """ms per decoding step from a copy of ``state`` under a column's kernels (``use``), and the
    last step's logits."""
    cache, mask, token = copy.deepcopy(state)
    use(model, spec)
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


def engine_run(chat, spec, rows: int, tokens: int, spread: bool):
    use(chat.model, spec)
    chat.prefixes.clear()
    start = time.perf_counter()
    outs = chat.generate(long_prompts(rows, spread), max_new_tokens=tokens,
                         min_new_tokens=tokens, temperature=0.0, progress=False)
    seconds = time.perf_counter() - start
    return sum(o.completion_tokens for o in outs) / seconds, [o.text for o in outs]


def precision(model_name: str, kernels: dict, context: int, steps: int = 48, rows: int = 3):
    """Part 3 (module docstring): each kit kernel's bf16 decoding against fp32 on real text."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text() + "\n" + (root / "docs" / "RESULTS.md").read_text()
    ref = lw.llm.load(model_name, dtype=torch.float32, decode_kernel=False)
    ids = ref.tokenizer(text, add_special_tokens=False).input_ids
    span = context + steps
    if len(ids) < span + 2 * (rows - 1) * 97:
        ids = ids * (1 + (span + 2 * rows * 97) // len(ids))
    batch = torch.tensor([ids[97 * r: 97 * r + span] for r in range(rows)])
    with torch.inference_mode():
        gold = ref.model(input_ids=batch).logits[:, context - 1: span - 1].float()
    del ref
    chat = lw.llm.load(model_name, dtype=torch.bfloat16)
    tops = {}
    print(f"\nbf16 against fp32 on real text: {rows} rows x {context} cached tokens, {steps} "
          "teacher-forced decoding steps")
    for name in [k for k in kernels if k != "sdpa"]:
        use(chat.model, ("sdpa", False))
        cache = _cache(chat.model.config)
        with torch.inference_mode():
            out = chat.model(input_ids=batch[:, :context], use_cache=True, cache=cache,
                             logits_to_keep=1)
            logits = [out.logits[:, -1].float()]
            use(chat.model, kernels[name])
            for i in range(context, span - 1):
                logits.append(chat.model(input_ids=batch[:, i:i + 1], use_cache=True,
                                         cache=cache).logits[:, -1].float())
        got = torch.stack(logits, 1)
        kl = torch.nn.functional.kl_div(got.log_softmax(-1), gold.log_softmax(-1),
                                        log_target=True, reduction="none").sum(-1).mean()
        tops[name] = got.argmax(-1)
        agree = (tops[name] == gold.argmax(-1)).float().mean()
        print(f"  {name:<10} mean KL {kl:.5f}, largest logit error "
              f"{(got - gold).abs().max():.3f}, top-1 as fp32's {agree:.3f} of {got.shape[0] * got.shape[1]}")
    names = list(tops)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            print(f"  top-1 {a} vs {b}: {(tops[a] == tops[b]).float().mean():.3f}")


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
    ap.add_argument("--packed", action="store_true",
                    help="add packed SDPA only (lw_sdpa until the fourth session)")
    ap.add_argument("--precision", action="store_true", help="part 3: bf16 against fp32")
    ap.add_argument("--precision-context", type=int, default=2900)
    args = ap.parse_args(argv)
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    why = lw.llm.cpu_bf16()
    if why and torch.bfloat16 in dtypes:
        dtypes.remove(torch.bfloat16)
    print(f"{args.model}, {args.rows} rows, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, {platform.processor() or platform.machine()}, torch's CPU "
          f"capability {torch.backends.cpu.get_cpu_capability()}"
          + (f"; bf16 skipped ({why})" if why else ""))
    module, why_not = cpu_kernel.load()
    if module is None:
        print(f"lw_kernel cannot run here ({why_not}): it is left out")
    kernels = {"sdpa": ("sdpa", False), "lw_sdpa": (register(), False)}
    if args.packed:
        kernels["packed"] = (register("lw_sdpa_packed", matmul_from=float("inf")), False)
    if module is not None:
        _KERNEL["module"] = module
        kernels["lw_kernel"] = (register(KERNEL_NAME, kernel=module), False)
        if not args.no_prepack and module.bf16_dot():
            kernels["lw_rows"] = (kernels["lw_kernel"][0], True)
        else:
            print("lw_rows left out: " + ("--no-prepack" if args.no_prepack
                                          else "the CPU lacks AVX-512 BF16"))
    new = list(kernels)[-1]  # what the ratios are of
    contexts = [int(c) for c in args.contexts.split(",")]
    print(f"lw_sdpa uses the products from {MATMUL_FROM} rows x positions in bf16; linear "
          f"layers {'plain' if args.no_prepack else 'prepacked where they can be'}\n")
    others = [k for k in kernels if k != new]
    print(f"{'dtype':<9} {'context':>7} {'padded':>6} "
          + " ".join(f"{k + ' ms':>12}" for k in kernels) + " "
          + " ".join(f"{'vs ' + k:>10}" for k in others) + f" {'max logit diff':>14}")
    for dtype in dtypes:
        chat = lw.llm.load(args.model, batch_size=args.rows, dtype=dtype,
                           prepack=False if args.no_prepack else None)
        for context in contexts:
            for padded in (False, True):
                state = prefilled(chat.model, args.rows, context, padded)
                step_ms(chat.model, kernels["sdpa"], state, 1)  # warm-up
                ms, logits = {}, {}
                for kernel, impl in kernels.items():
                    ms[kernel], logits[kernel] = step_ms(chat.model, impl, state, args.steps)
                diff = (logits[new] - logits["sdpa"]).abs().max()
                print(f"{str(dtype)[6:]:<9} {context:>7} {padded!s:>6} "
                      + " ".join(f"{ms[k]:>12.1f}" for k in kernels) + " "
                      + " ".join(f"{ms[k] / ms[new]:>9.2f}x" for k in others)
                      + f" {diff:>14.3g}", flush=True)
        for spread in (False, True) if args.engine_tokens else ():
            speed, texts = {}, {}
            for kernel, impl in kernels.items():
                speed[kernel], texts[kernel] = engine_run(chat, impl, args.rows,
                                                          args.engine_tokens, spread)
            same = {k: sum(x == y for x, y in zip(texts["sdpa"], t, strict=True))
                    for k, t in texts.items()}
            shape = "~400 to ~1,500 tokens" if spread else "~1,500 tokens each"
            print(f"{str(dtype)[6:]:<9} engine, {args.rows} prompts of {shape} + "
                  f"{args.engine_tokens} forced, tokens/s: "
                  + ", ".join(f"{k} {speed[k]:.1f}" for k in kernels) + f"; {new} = "
                  + ", ".join(f"{speed[new] / speed[k]:.2f}x {k}" for k in others)
                  + "; greedy replies identical to sdpa's: "
                  + ", ".join(f"{k} {same[k]}/{args.rows}" for k in others[1:] + [new]),
                  flush=True)
        use(chat.model, kernels[new])
    if args.precision and torch.bfloat16 in dtypes:
        precision(args.model, kernels, args.precision_context)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
