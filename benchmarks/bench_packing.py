"""Useful training tokens per second: packed rows vs padded batches, side by side in one run.

    python benchmarks/bench_packing.py [--model smollm2-135m] [--conversations 24] [--max-length 2048]

A LongWriter-like mix of conversation lengths (most answers short, a third long, as when
LongWriter-6k is mixed with general SFT data), trained one pass each way on the same model with
the kit's collator and loss (forward, backward, AdamW step):
  padded  batches of --batch conversations in random order, each padded to its longest (the
          usual default), 2D attention mask;
  packed  conversations packed first-fit into rows of --max-length tokens, one row per step,
          isolated by one causal attention per conversation (lw.sft.segments, what lw.sft.train
          uses without flash-attention);
  mask    the same packed rows isolated by a 4D block-diagonal mask (the kit's earlier way).
Useful tokens are the non-padding tokens. Target (issue 5): packing at least 2x on 2 CPU cores
with the embedded model. All start from the same weights; the order of runs rotates per repeat
so none gains from a warm cache.
"""

import argparse
import copy
import platform
import random
import time

import torch

import lw
from lw.sft import Collator, pack, segments, tokenize, weighted_loss
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


def run(model, rows, collate, attention: str, lr: float = 1e-5) -> dict:
    model = copy.deepcopy(model).train()
    model.set_attn_implementation(attention)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    useful = padded = 0
    start = time.perf_counter()
    for row in rows:
        batch = collate(row)
        labels, seq_ids = batch.pop("labels"), batch.pop("seq_ids")
        loss = weighted_loss(model(**batch).logits, labels, seq_ids)
        loss.backward()
        opt.step()
        opt.zero_grad()
        useful += int((seq_ids >= 0).sum())
        padded += seq_ids.numel()
    seconds = time.perf_counter() - start
    return {"steps": len(rows), "useful": useful, "computed": padded, "seconds": seconds,
            "useful_per_s": useful / seconds}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--conversations", type=int, default=24)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4, help="conversations per padded batch")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    from lw.sft.config import SFTConfig

    tokenizer, model = load_model(args.model, SFTConfig(output_dir="/tmp/lw-bench-packing"))
    examples, stats = tokenize(conversations(args.conversations), tokenizer, args.max_length)
    lengths = sorted(len(e) for e in examples)
    print(f"lw {lw.__version__} · torch {torch.__version__} · {platform.processor() or 'cpu'} · "
          f"threads {torch.get_num_threads()} · model {args.model}")
    print(f"{stats.kept} conversations, {stats.tokens} tokens; lengths min {lengths[0]}, median "
          f"{lengths[len(lengths) // 2]}, max {lengths[-1]}; max_length {args.max_length}")
    # A batch is a list of rows; a row is a list of conversations.
    packed = [[row] for row in pack(examples, args.max_length)]
    ways = {  # name: (batches, collator, attention implementation)
        "padded": ([[[e] for e in examples[i:i + args.batch]]
                    for i in range(0, len(examples), args.batch)],
                   Collator(tokenizer.pad_token_id), "sdpa"),
        "packed": (packed, Collator(tokenizer.pad_token_id, isolate="segments"),
                   segments.register()),
        "mask": (packed, Collator(tokenizer.pad_token_id, isolate="mask"), "sdpa")}
    results = {name: [] for name in ways}
    names = list(ways)
    for r in range(args.repeats):
        for name in names[r % 3:] + names[:r % 3]:
            batches, collate, attention = ways[name]
            results[name].append(run(model, batches, collate, attention))
    print(f"\n{'method':<8} {'steps':>6} {'useful tok':>11} {'computed':>9} {'pad %':>6} "
          f"{'seconds':>8} {'useful tok/s':>13}")
    best = {}
    for name, runs in results.items():
        m = min(runs, key=lambda x: x["seconds"])
        best[name] = m
        pad = 100 * (1 - m["useful"] / m["computed"])
        print(f"{name:<8} {m['steps']:>6} {m['useful']:>11} {m['computed']:>9} {pad:>5.1f}% "
              f"{m['seconds']:>8.1f} {m['useful_per_s']:>13.1f}")
    ratio = best["packed"]["useful_per_s"] / best["padded"]["useful_per_s"]
    print(f"\npacked / padded useful tokens per second: {ratio:.2f}x (target >= 2x; "
          f"{'met' if ratio >= 2 else 'MISSED'}); with the 4D mask instead: "
          f"{best['mask']['useful_per_s'] / best['padded']['useful_per_s']:.2f}x")


if __name__ == "__main__":
    main()
