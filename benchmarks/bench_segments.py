"""Segment attention for packed training rows (``lw.sft.segments``): slicing each conversation
out of the row (the kit before 2026-12-03's fifth session) against one split per tensor (now),
forward and backward, side by side in one run.

    python benchmarks/bench_segments.py [--length 4096] [--conversations 17] [--layers 30]
                                        [--train-steps 2]

The shape of notebook 05's SFT at `small` (SmolLM2-135M: 9 query heads over 3 key/value heads
of 64; rows of 4,096 tokens holding ~17 conversations; 30 layers), in bf16 as under autocast.
A slice's backward writes its conversation's gradient into a zeroed tensor of the whole row
and the pieces are summed; a split's backward concatenates them once. Printed: ms for all
layers' attention forward and backward, best of ``--repeats`` each way in alternating order,
the ratio, and the largest difference in output and gradients (none expected: same kernels).
With ``--train-steps N`` (N > 0), also whole training steps of SmolLM2-135M on packed rows (bf16
autocast over fp32 weights, the kit's collator and loss, as ``bench_cpu_train.py``) with each
attention registered in turn: seconds per step, best of N each way, alternating.
"""

import argparse
import time

import torch
import torch.nn.functional as F

from lw.sft import segments


def sliced(query, key, value, starts):
    """The kit's segment attention before the split (one batch row, grouped heads repeated)."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    bounds = zip(starts, starts[1:] + [query.shape[2]], strict=True)
    out = torch.cat([F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e],
                                                    value[:, :, s:e], is_causal=True)
                     for s, e in bounds], dim=2)
    return out.transpose(1, 2).contiguous()


def split(query, key, value, position_ids):
    return segments.segment_attention(torch.nn.Module(), query, key, value, None,
                                      position_ids=position_ids)[0]


def lengths(total: int, n: int, seed: int = 0) -> list[int]:
    """``n`` conversation lengths summing to ``total``, uneven as packed rows are."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g) + 0.2
    sizes = (w / w.sum() * total).long().clamp(min=1)
    sizes[-1] += total - int(sizes.sum())
    return sizes.tolist()


def run(fn, args_of, layers: int, dtype):
    leaves = [tuple(t.clone().requires_grad_() for t in args_of) for _ in range(layers)]
    start = time.perf_counter()
    outs = []
    for q, k, v in leaves:
        outs.append(fn(q, k, v))
    loss = sum((o.float() * 1e-3).sum() for o in outs)
    loss.backward()
    seconds = time.perf_counter() - start
    return seconds, outs[0].detach(), tuple(t.grad for t in leaves[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--conversations", type=int, default=17)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--train-steps", type=int, default=0,
                    help="also time this many whole training steps each way (0: skip)")
    args = ap.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    sizes = lengths(args.length, args.conversations)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    position_ids = torch.tensor([[i for n in sizes for i in range(n)]])
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 9, args.length, 64, generator=g).to(dtype)
    k = torch.randn(1, 3, args.length, 64, generator=g).to(dtype)
    v = torch.randn(1, 3, args.length, 64, generator=g).to(dtype)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, one row "
          f"of {args.length} tokens in {len(sizes)} conversations ({min(sizes)}-{max(sizes)} "
          f"tokens), {args.layers} layers, forward + backward")
    ways = {"sliced (before)": lambda a, b, c: sliced(a, b, c, starts),
            "split (now)": lambda a, b, c: split(a, b, c, position_ids)}
    best, last = {}, {}
    for r in range(args.repeats):
        for name in (list(ways) if r % 2 == 0 else list(reversed(ways))):
            seconds, out, grads = run(ways[name], (q, k, v), args.layers, dtype)
            best[name] = min(best.get(name, float("inf")), seconds)
            last[name] = (out, grads)
    (o1, g1), (o2, g2) = last.values()
    diff = max([(o1.float() - o2.float()).abs().max().item()]
               + [(a.float() - b.float()).abs().max().item() for a, b in zip(g1, g2, strict=True)])
    for name, s in best.items():
        print(f"  {name:<16} {1000 * s:9.1f} ms")
    before, now = best.values()
    print(f"  split vs sliced: {before / now:.2f}x; largest difference in output and "
          f"gradients {diff:.3g}")
    if args.train_steps:
        train_steps(args.train_steps, args.length)
    return 0


def train_steps(steps: int, length: int) -> None:
    import sys
    import tempfile
    from pathlib import Path

    from transformers import AttentionInterface

    from lw.sft import Collator, attention, pack, tokenize, weighted_loss
    from lw.sft.config import SFTConfig
    from lw.sft.train import load_model

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_packing import conversations

    def sliced_hf(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                  position_ids=None, **kwargs):
        starts = segments.per_forward("segments", position_ids, segments._row_starts)[0]
        return sliced(query, key, value, starts), None

    tokenizer, model = load_model("smollm2-135m", SFTConfig(output_dir=tempfile.mkdtemp()))
    examples, _ = tokenize(conversations(12 * (steps + 1)), tokenizer, length)
    rows = [[r] for r in pack(examples, length)][:steps + 1]
    model.train()
    attention.setup(model, "segments")
    collate = Collator(tokenizer.pad_token_id, isolate="segments", mask_dtype=torch.bfloat16)
    fns = {"sliced (before)": sliced_hf, "split (now)": segments.segment_attention}
    best = {name: float("inf") for name in fns}
    for i, row in enumerate(rows):
        for name in (list(fns) if i % 2 == 0 else list(reversed(fns))):
            AttentionInterface.register(segments.NAME, fns[name])
            batch = collate(row)
            labels, seq_ids = batch.pop("labels"), batch.pop("seq_ids")
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(**batch).logits
            weighted_loss(logits, labels, seq_ids).backward()
            seconds = time.perf_counter() - start
            model.zero_grad(set_to_none=True)
            if i:  # the first row warms both ways up
                best[name] = min(best[name], seconds)
    AttentionInterface.register(segments.NAME, segments.segment_attention)
    print(f"training steps (SmolLM2-135M, one packed row of {length} tokens, bf16 autocast, "
          f"forward + backward, best of {steps}):")
    for name, s in best.items():
        print(f"  {name:<16} {s:9.1f} s")
    before, now = best.values()
    print(f"  split vs sliced: {before / now:.2f}x a training step")


if __name__ == "__main__":
    raise SystemExit(main())
