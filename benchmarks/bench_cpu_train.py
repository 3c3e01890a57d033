"""Fine-tuning on a CPU: fp32 vs bf16 autocast over fp32 weights, side by side in one run.

    python benchmarks/bench_cpu_train.py [--model smollm2-135m] [--rows 3] [--max-length 4096]

Notebook 05's shape at `small`: SmolLM2-135M, packed rows of 4,096 tokens, one row per step,
the kit's collator, loss and packed-attention path (segments on CPU), AdamW. Both ways start
from the same fp32 weights and see the same rows in the same order; the order of the two runs
alternates per repeat so neither gains from a warm cache. Printed: useful training tokens per
second and their ratio (issue 23's target for generation was 2x; for training any gain that
loses no update is worth having), the loss at each step both ways (bf16 computes the same loss
to within its rounding, so the curves should agree to a few hundredths), and issue 13's update
probe (``lw.sft.bf16_update_probe``): the share of weights a few AdamW steps at lr 1e-5 change
with fp32 weights under bf16 autocast (the kit's way: all should change) and with pure-bf16
weights (the way the kit warns about: most updates round away), so the probe is seen to fail
where it should. The CPU's model and whether it has AVX-512 BF16 or AMX are printed first:
without them bf16 is emulated and slower, and `small` keeps fp32 there.
"""

import argparse
import contextlib
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

import lw
from lw.llm import cpu_bf16
from lw.sft import Collator, attention, bf16_update_probe, pack, tokenize, weighted_loss
from lw.sft.config import SFTConfig
from lw.sft.train import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_packing import conversations  # noqa: E402  the same LongWriter-like mix


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown CPU"


def train_rows(model, rows, pad_id: int, bf16: bool, lr: float) -> dict:
    """One pass over ``rows`` (one packed row per step) as ``bench_packing.run`` trains, timed,
    with the loss of each step (reading it costs nothing beside the step)."""
    m = copy.deepcopy(model).train()
    isolate = attention.setup(m, attention.choose("auto", "cpu", half=bf16))
    collate = Collator(pad_id, isolate=isolate, mask_dtype=torch.bfloat16 if bf16 else None)
    opt = torch.optim.AdamW(m.parameters(), lr=lr)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    losses, tokens = [], 0
    start = time.perf_counter()
    for row in rows:
        batch = collate(row)
        labels, seq_ids = batch.pop("labels"), batch.pop("seq_ids")
        with amp:
            logits = m(**batch).logits
        loss = weighted_loss(logits, labels, seq_ids)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
        tokens += int((seq_ids >= 0).sum())
    seconds = time.perf_counter() - start
    return {"steps": len(rows), "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds, "losses": losses}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=3, help="packed rows trained each way")
    ap.add_argument("--max-length", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-4, help="notebook 05's small recipe's")
    ap.add_argument("--probe-steps", type=int, default=5)
    args = ap.parse_args(argv)
    if torch.cuda.is_available():
        print("note: a GPU is present; this benchmark measures the CPU (the model stays there).")
    torch.manual_seed(0)
    why = cpu_bf16()
    print(f"lw {lw.__version__} · torch {torch.__version__} · {cpu_name()} · threads "
          f"{torch.get_num_threads()} · model {args.model}")
    print("bf16 instructions: " + ("yes (AVX-512 BF16 or AMX)" if why is None else f"no: {why}"))
    tokenizer, model = load_model(args.model, SFTConfig(output_dir=tempfile.mkdtemp()))
    # about 9 of these conversations fill a 4,096-token row
    convs = conversations(12 * args.rows)
    examples, _ = tokenize(convs, tokenizer, args.max_length)
    rows = [[r] for r in pack(examples, args.max_length)][:args.rows]
    print(f"{len(rows)} packed rows of up to {args.max_length} tokens "
          f"({sum(len(e) for r in rows for e in r[0])} tokens), lr {args.lr:g}")

    results = {"fp32": [], "bf16 autocast": []}
    for r in range(args.repeats):
        order = [False, True] if r % 2 == 0 else [True, False]
        for bf16 in order:
            name = "bf16 autocast" if bf16 else "fp32"
            results[name].append(train_rows(model, rows, tokenizer.pad_token_id, bf16, args.lr))
    print(f"\n{'compute':<14} {'steps':>6} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    best = {}
    for name, runs in results.items():
        m = best[name] = min(runs, key=lambda x: x["seconds"])
        print(f"{name:<14} {m['steps']:>6} {m['tokens']:>7} {m['seconds']:>8.1f} "
              f"{m['tokens_per_s']:>9.1f}")
    ratio = best["bf16 autocast"]["tokens_per_s"] / best["fp32"]["tokens_per_s"]
    print(f"\nbf16 autocast / fp32 training tokens per second: {ratio:.2f}x")
    curves = {name: results[name][0]["losses"] for name in results}
    diffs = [abs(a - b) for a, b in zip(curves["fp32"], curves["bf16 autocast"], strict=True)]
    print("loss by step, fp32:          " + " ".join(f"{x:.3f}" for x in curves["fp32"]))
    print("loss by step, bf16 autocast: " + " ".join(f"{x:.3f}" for x in curves["bf16 autocast"]))
    print(f"largest difference: {max(diffs):.3f}")

    print(f"\nupdate probe: {args.probe_steps} AdamW steps at lr 1e-5, 512-token rows")
    probe_data = [{"messages": c} for c in convs]
    for weights in ("float32", "bfloat16"):
        with tempfile.TemporaryDirectory() as out:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pure bf16's own warning
                p = bf16_update_probe(args.model, probe_data, lr=1e-5, steps=args.probe_steps,
                                      weights_dtype=weights, output_dir=out)
        label = "fp32 weights, bf16 autocast" if weights == "float32" else "pure-bf16 weights"
        print(f"  {label:<28} {100 * p['frac_changed']:6.2f}% of {p['weights']:,} weights "
              f"changed ({p['compute']}, {p['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
