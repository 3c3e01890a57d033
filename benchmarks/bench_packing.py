"""Useful training tokens per second: packed rows vs padded batches, side by side in one run.

    python benchmarks/bench_packing.py [--model smollm2-135m] [--conversations 24] [--max-length 2048]
    python benchmarks/bench_packing.py --paths segments,varlen,flex --bf16    # on a GPU

A LongWriter-like mix of conversation lengths (most answers short, a third long, as when
LongWriter-6k is mixed with general SFT data), trained one pass each way on the same model with
the kit's collator and loss (forward, backward, AdamW step):
  padded  batches of --batch conversations in random order, each padded to its longest (the
          usual default), 2D attention mask;
  packed  conversations packed first-fit into rows of --max-length tokens, one row per step,
          isolated by the packed-attention path lw.sft.train picks here (lw.sft.attention:
          segments on CPU; flash, varlen or flex on CUDA);
  <path>  the same packed rows through each other path of --paths that can run here
          (segments, mask = a 4D block-diagonal mask, flex, varlen, flash).
Useful tokens are the non-padding tokens. Target (issue 5): packing at least 2x on 2 CPU cores
with the embedded model. All start from the same fp32 weights (bf16 autocast with --bf16, the
default on CUDA); the order of runs rotates per repeat so none gains from a warm cache, and on
CUDA each run first takes --warmup untimed steps (kernels, compilation).
Note: a padded batch and a packed row hold different numbers of tokens; lw.sft.train's
comparison at equal tokens per step is benchmarks/bench_gpu.py's.
"""

import argparse
import contextlib
import copy
import platform
import random
import time

import torch

import lw
from lw.sft import Collator, attention, pack, tokenize, weighted_loss
from lw.sft.train import load_model

WORDS = ("harbour river lantern market orchard bridge winter letter garden journey signal "
         "library mountain kitchen engine meadow window village compass harvest").split()


def conversations(n: int, seed: int = 0) -> list[list[dict]]:
    """Two thirds short answers (30-200 words), one third long ones (400-1,300 words)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.randint(400, 1300) if i % 3 == 0 else rng.randint(30, 200)
        reply = " ".join(rng.choice(WORDS) for _ in range(words)) + "."
        out.append([{"role": "user", "content": f"Write about item {i}."},
                    {"role": "assistant", "content": reply}])
    rng.shuffle(out)
    return out


def run(model, rows, path: str | None, pad_id: int, bf16: bool, warmup: int = 0,
        lr: float = 1e-5) -> dict:
    """Train one pass over ``rows`` (batches of rows of conversations) with packed-attention
    ``path`` (None: padded batches, SDPA with a 2D mask)."""
    model = copy.deepcopy(model).train()
    isolate = attention.setup(model, path) if path else "mask"
    collate = Collator(pad_id, isolate=isolate, mask_dtype=torch.bfloat16 if bf16 else None)
    device = next(model.parameters()).device
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
           else contextlib.nullcontext())
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    useful = padded = 0
    for i, row in enumerate(rows[:warmup] + rows):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        batch = {k: v.to(device) for k, v in collate(row).items()}
        labels, seq_ids = batch.pop("labels"), batch.pop("seq_ids")
        with amp:
            logits = model(**batch).logits
        weighted_loss(logits, labels, seq_ids).backward()
        opt.step()
        opt.zero_grad()
        if i >= warmup:
            useful += int((seq_ids >= 0).sum())
            padded += seq_ids.numel()
    _sync(device)
    seconds = time.perf_counter() - start
    return {"steps": len(rows), "useful": useful, "computed": padded, "seconds": seconds,
            "useful_per_s": useful / seconds}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--conversations", type=int, default=24)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4, help="conversations per padded batch")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--paths", default="segments,mask,flex,varlen,flash",
                    help="packed-attention paths to time, where they can run here")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="bf16 autocast over fp32 weights (default: on CUDA)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (default: 1 on CUDA)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    from lw.sft.config import SFTConfig

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    bf16 = cuda if args.bf16 is None else args.bf16
    warmup = (1 if cuda else 0) if args.warmup is None else args.warmup
    tokenizer, model = load_model(args.model, SFTConfig(output_dir="/tmp/lw-bench-packing"))
    model.to(device)
    examples, stats = tokenize(conversations(args.conversations), tokenizer, args.max_length)
    lengths = sorted(len(e) for e in examples)
    where = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    print(f"lw {lw.__version__} · torch {torch.__version__} · {where} · threads "
          f"{torch.get_num_threads()} · model {args.model} · {'bf16 autocast' if bf16 else 'fp32'}")
    print(f"{stats.kept} conversations, {stats.tokens} tokens; lengths min {lengths[0]}, median "
          f"{lengths[len(lengths) // 2]}, max {lengths[-1]}; max_length {args.max_length}")
    # A batch is a list of rows; a row is a list of conversations.
    packed = [[row] for row in pack(examples, args.max_length)]
    auto = attention.choose("auto", device, half=bf16)
    ways = {"padded": ([[[e] for e in examples[i:i + args.batch]]
                        for i in range(0, len(examples), args.batch)], None),
            "packed": (packed, auto)}
    for path in args.paths.split(","):
        if path != auto and not attention.problem(path, device, bf16):
            ways[path] = (packed, path)
    skipped = {p: attention.problem(p, device, bf16) for p in args.paths.split(",")
               if p not in ways and p != auto}
    print(f"packed = {auto}; also timed: {', '.join(list(ways)[2:]) or 'none'}"
          + "".join(f"\n  not here: {p}: {why}" for p, why in skipped.items()))
    results = {name: [] for name in ways}
    names = list(ways)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            batches, path = ways[name]
            results[name].append(run(model, batches, path, tokenizer.pad_token_id, bf16, warmup))
    print(f"\n{'method':<9} {'steps':>6} {'useful tok':>11} {'computed':>9} {'pad %':>6} "
          f"{'seconds':>8} {'useful tok/s':>13}")
    best = {}
    for name, runs in results.items():
        m = min(runs, key=lambda x: x["seconds"])
        best[name] = m
        pad = 100 * (1 - m["useful"] / m["computed"])
        print(f"{name:<9} {m['steps']:>6} {m['useful']:>11} {m['computed']:>9} {pad:>5.1f}% "
              f"{m['seconds']:>8.1f} {m['useful_per_s']:>13.1f}")
    ratio = best["packed"]["useful_per_s"] / best["padded"]["useful_per_s"]
    target = 1.3 if cuda else 2.0
    print(f"\npacked ({auto}) / padded useful tokens per second: {ratio:.2f}x (target >= "
          f"{target}x; {'met' if ratio >= target else 'MISSED'})")
    for name in list(best)[2:]:
        print(f"  with {name} instead: "
              f"{best[name]['useful_per_s'] / best['padded']['useful_per_s']:.2f}x")


if __name__ == "__main__":
    main()
