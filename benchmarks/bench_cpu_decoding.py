"""The kit's engine on a CPU in bf16, three ways side by side in one run: tokens/s at the
notebooks' sampling settings, before and after each of the eighth session's two changes.

    python benchmarks/bench_cpu_decoding.py [--model smollm2-135m] [--rows 8,16] [--tokens 512]
        [--repeats 2]

The three ways, on one loaded model:

- ``attention kernel``: the kit on 2026-12-03 (seventh session): decoding attention through the
  compiled kernel, linear layers through oneDNN's prepacked product, tokens drawn by torch's
  operations (``lw.llm.engine.sample``);
- ``+ few-row linears``: linear layers' inputs of up to 32 rows through the kernel's AVX-512
  BF16 product (``lw.llm.prepacked.use_rows_kernel``);
- ``+ compiled sampler``: and the draws through the kernel's ``sample_step`` (the kit now).

Each way generates ``--rows`` replies of ``--tokens`` tokens (forced: ``min_new_tokens``) at
temperature 0.5 with repetition penalty 1.1, as notebooks 02-06 sample at ``small``, from
prompts of ~60 to ~500 tokens (the engine left-pads the shorter ones), best of ``--repeats``
in rotating order. Printed: tokens/s of each way and the ratios to the first, then the share
of replies identical to the first way's (the bf16 sums' order differs, so sampled texts part
after a while; how far the logits move from fp32's: ``bench_decode_attention.py
--precision``). Needs a CPU with AVX-512 BF16 (or AMX): elsewhere the kit runs fp32 and these
kernels do not apply, which it prints and stops.
"""

import argparse
import platform
import time

import torch

import lw
from lw.llm import cpu_bf16, cpu_kernel, prepacked

WORDS = ("the harbour light turned slowly over grey water while gulls argued on the pier and "
         "the old keeper wrote his log in a careful hand").split()


def prompts(n: int) -> list[str]:
    """``n`` requests of ~40 to ~350 words: short instructions to long ones with context."""
    sizes = [40 + 310 * i // max(1, n - 1) for i in range(n)]
    return [f"Request {i + 1}. Continue this story at length:\n"
            + " ".join(WORDS[j % len(WORDS)] for j in range(size)) for i, size in enumerate(sizes)]


def use(chat, kernel, way: str) -> None:
    """Put ``chat`` on one of the three ways (module docstring)."""
    if way == "attention kernel":
        prepacked.drop_rows_kernel(chat.model)
    else:
        prepacked.use_rows_kernel(chat.model, kernel)
    # the engine's sampler is the model's kernel; None draws with torch's operations
    chat._sampler = kernel if way == "+ compiled sampler" else None


def run(chat, rows: int, tokens: int) -> tuple[float, list[str]]:
    chat.batch_size = rows
    chat.prefixes.clear()
    start = time.perf_counter()
    outs = chat.generate(prompts(rows), max_new_tokens=tokens, min_new_tokens=tokens,
                         temperature=0.5, repetition_penalty=1.1, seed=0, progress=False)
    seconds = time.perf_counter() - start
    return sum(o.completion_tokens for o in outs) / seconds, [o.text for o in outs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", default="8,16")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    print(f"{args.model}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, torch's CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    why = cpu_bf16()
    kernel, why_not = cpu_kernel.load()
    if why or kernel is None or not kernel.bf16_dot():
        print(f"not measured here: {why or why_not or 'the CPU lacks AVX-512 BF16'}")
        return 0
    chat = lw.llm.load(args.model, dtype=torch.bfloat16, decode_kernel=True)
    info = chat.info()
    print(f"decode_kernel {info['decode_kernel']}, linear_kernel {info['linear_kernel']}, "
          f"sampler {info['sampler']}; temperature 0.5, repetition penalty 1.1, "
          f"{args.tokens} forced tokens a reply, best of {args.repeats}\n")
    ways = ["attention kernel", "+ few-row linears", "+ compiled sampler"]
    print(f"{'rows':>4} " + " ".join(f"{w + ' tok/s':>26}" for w in ways)
          + f" {'ratios to the first':>22} {'texts as the first':>19}")
    for rows in [int(r) for r in args.rows.split(",")]:
        speed = {w: 0.0 for w in ways}
        texts = {}
        for r in range(args.repeats):
            for w in ways[r % len(ways):] + ways[:r % len(ways)]:  # rotate the order
                use(chat, kernel, w)
                tps, texts[w] = run(chat, rows, args.tokens)
                speed[w] = max(speed[w], tps)
        same = sum(a == b for a, b in zip(texts[ways[0]], texts[ways[-1]], strict=True))
        print(f"{rows:>4} " + " ".join(f"{speed[w]:>26.1f}" for w in ways) + " "
              + f"{' / '.join(f'{speed[w] / speed[ways[0]]:.2f}x' for w in ways[1:]):>22} "
              + f"{same:>13}/{rows}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
