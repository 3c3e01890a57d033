"""What issue 21 could not measure on CPU, in one short run on a lent GPU: the memory estimate
against ``torch.cuda.max_memory_allocated``, the chunked loss against Liger's fused linear
cross-entropy, and a one-process FSDP and ZeRO-3 launch of ``python -m lw.sft``.

    python benchmarks/gpu_train.py --model DIR [--out results.jsonl] [--budget 240] [--cpu]

DIR holds a model's config.json and tokenizer (weights are not needed: the models are built
with random weights from the config, which is right for memory and plumbing, not for text).
``../shared/gpu-check/model`` (SmolLM2-135M's config and tokenizer) is what the lent machine has;
the script also builds the SmolLM2-1.7B shape from it. Each step prints one JSON line and
appends it to ``--out``; a step that fails is recorded and the next one runs. ``--cpu`` runs
tiny shapes on the CPU (the sharded launches are skipped: accelerate runs FSDP and DeepSpeed on
GPUs only), which is how the script is tested before device time is spent on it.

On the lent machine (see ../shared/gpu-check/README.md for the wheels it lacks; this script
needs trl there, and liger-kernel and deepspeed for the steps that use them, otherwise those
steps say they were skipped):

    PYTHONPATH=$SITE:$PWD python benchmarks/gpu_train.py --model gpu/model --out $OUT/train.jsonl

Steps:
* ``estimate``: lw.sft.train for 3 steps at 135M (full, LoRA) and 1.7B (full) shapes, bf16,
  4,096-token rows, gradient checkpointing, chunked loss; the measured peak beside
  ``lw.sft.memory.estimate`` for the same recipe, and their ratio.
* ``loss``: full-logits, chunked and (where installed) Liger loss on the 1.7B shape's head at
  8,192 tokens: loss and gradient differences against the full loss in fp32, peak and time.
* ``fsdp``, ``zero3``: ``accelerate launch --num_processes 1`` with the kit's FSDP and ZeRO-3
  configs on the 135M shape; the run record's ``distributed`` must name what ran.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RECIPE = ROOT / "recipes" / "smollm2-135m" / "sft" / "config_full_cpu.yaml"
START = time.monotonic()


def emit(out: Path | None, **row) -> None:
    row["t"] = round(time.monotonic() - START, 1)
    line = json.dumps(row, default=str)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(line + "\n")


def shapes(model_dir: Path, work: Path, cpu: bool) -> dict:
    """Folders holding config + tokenizer for each shape (random weights are saved, so lw.sft
    loads them like any checkpoint)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    base = AutoConfig.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    sizes = {"135m": {}, "1.7b": dict(hidden_size=2048, intermediate_size=8192,
                                      num_hidden_layers=24, num_attention_heads=32,
                                      num_key_value_heads=32)}
    if cpu:  # plumbing only
        sizes = {"135m": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2),
                 "1.7b": dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=4)}
    folders = {}
    for name, change in sizes.items():
        d = work / f"model-{name}"
        if not (d / "config.json").exists():
            config = AutoConfig.from_pretrained(model_dir, **change)
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
            model.save_pretrained(d)
            tok.save_pretrained(d)
            del model
        folders[name] = d
    del base
    return folders


def conversations(path: Path, tokens: int, n: int) -> Path:
    """``n`` conversations that each fit in ``tokens`` (a word here is 1-2 SmolLM2 tokens), so
    packing fills a row of ``tokens`` from two or three of them."""
    import random

    rng = random.Random(0)
    words = "river stone light paper garden window music letter city north".split()
    with path.open("w") as f:
        for i in range(n):
            reply = " ".join(rng.choice(words) for _ in range(tokens // 3))
            f.write(json.dumps({"messages": [
                {"role": "user", "content": f"Write {tokens} words, number {i}."},
                {"role": "assistant", "content": reply}]}) + "\n")
    return path


def estimate_step(out, folders, work, cpu, tokens):
    import torch

    import lw.sft
    from lw.sft import memory
    from lw.sft.config import load_recipe

    runs = [("135m-full", "135m", {}),
            ("135m-lora", "135m", {"lora": {"r": 16, "alpha": 32, "dropout": 0.0,
                                            "target_modules": "all-linear"}}),
            ("1.7b-full", "1.7b", {})]
    data = conversations(work / "est.jsonl", tokens, 12)
    for label, size, extra in runs:
        settings = dict(model=f"hf:{folders[size]}", output_dir=str(work / "est" / label),
                        bf16=not cpu, num_train_epochs=1, max_steps=3, packing=True,
                        per_device_train_batch_size=1, gradient_accumulation_steps=1,
                        max_length=tokens, save_strategy="no", logging_steps=1,
                        learning_rate=1e-5, warmup_steps=0, gradient_checkpointing=True, **extra)
        try:
            est = memory.estimate(load_recipe(RECIPE, **settings), gpus=1)
            if not cpu:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
            result = lw.sft.train(RECIPE, data=str(data), progress=False, force=True, **settings)
            peak = None if cpu else (torch.cuda.max_memory_allocated() - before) / 1e9
            emit(out, step="estimate", run=label, tokens=tokens, estimate_gb=round(est.total, 3),
                 parts={k: round(getattr(est, k), 3) for k in
                        ("weights", "gradients", "optimizer", "activations", "logits_loss")},
                 measured_gb=None if peak is None else round(peak, 3),
                 ratio=None if not peak else round(est.total / peak, 3),
                 loss=next((h["train_loss"] for h in result.log_history if "train_loss" in h),
                           None), device="cpu" if cpu else "cuda")
            del result
        except Exception as exc:  # noqa: BLE001 - one failed run must not end the check
            traceback.print_exc()
            emit(out, step="estimate", run=label, error=repr(exc)[:600])
        gc.collect()
        if not cpu:
            torch.cuda.empty_cache()


def loss_step(out, cpu):
    import torch

    from lw.sft import loss as L

    device = "cpu" if cpu else "cuda"
    tokens, hidden, vocab = (256, 64, 1000) if cpu else (8192, 2048, 49152)
    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, vocab, bias=False, device=device, dtype=torch.bfloat16)
    h0 = torch.randn(1, tokens, hidden, device=device, dtype=torch.bfloat16)
    labels = torch.randint(0, vocab, (1, tokens), device=device)
    labels[0, : tokens // 8] = -100
    seq_ids = torch.zeros(1, tokens, dtype=torch.long, device=device)

    def run(kind):
        head.weight.grad = None
        h = h0.clone().requires_grad_(True)
        if not cpu:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        t = time.perf_counter()
        if kind == "full":
            value = L.weighted_loss(head(h), labels, seq_ids)
        elif kind == "chunked":
            value = L.chunked_loss(h, head, labels, seq_ids)
        else:
            value = L.liger_loss(h, head, labels)
        value.backward()
        if not cpu:
            torch.cuda.synchronize()
        secs = time.perf_counter() - t
        peak = None if cpu else (torch.cuda.max_memory_allocated() - base) / 1e9
        return value.item(), h.grad.float(), head.weight.grad.float(), secs, peak

    ref = run("full")
    kinds = ["chunked"] + (["liger"] if not cpu and L._liger_class() is not None else [])
    if not cpu and L._liger_class() is None:
        emit(out, step="loss", kind="liger", skipped="liger-kernel not installed")
    emit(out, step="loss", kind="full", tokens=tokens, vocab=vocab, loss=ref[0],
         seconds=round(ref[3], 4), peak_gb=ref[4])
    for kind in kinds:
        try:
            r = run(kind)
            emit(out, step="loss", kind=kind, loss=r[0], loss_diff=abs(r[0] - ref[0]),
                 grad_hidden_max_diff=(r[1] - ref[1]).abs().max().item(),
                 grad_head_max_diff=(r[2] - ref[2]).abs().max().item(),
                 grad_scale=ref[2].abs().max().item(), seconds=round(r[3], 4), peak_gb=r[4],
                 peak_vs_full=None if not r[4] else round(r[4] / ref[4], 3))
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            emit(out, step="loss", kind=kind, error=repr(exc)[:600])


def sharded_step(out, folders, work, which, budget):
    config = ROOT / "recipes" / "accelerate_configs" / {
        "fsdp": "fsdp.yaml", "zero3": "deepspeed_zero3.yaml"}[which]
    if which == "zero3":
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            emit(out, step=which, skipped="deepspeed not installed")
            return
    data = conversations(work / f"{which}.jsonl", 1024, 8)
    dest = work / which
    sets = {"model": f"hf:{folders['135m']}", "output_dir": str(dest), "max_steps": 3,
            "max_length": 1024, "bf16": True, "save_strategy": "no", "logging_steps": 1}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "--num_processes", "1", "-m", "lw.sft", str(RECIPE), "--data", str(data)]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    t = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        emit(out, step=which, error=f"timed out after {budget} s")
        return
    record = dest / "final" / "lw_train.json"
    stats = json.loads(record.read_text())["stats"] if record.exists() else {}
    emit(out, step=which, rc=proc.returncode, seconds=round(time.monotonic() - t, 1),
         distributed=stats.get("distributed"), processes=stats.get("processes"),
         tail=None if proc.returncode == 0 else proc.stdout[-1500:]
         + proc.stderr[-1500:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="folder with config.json and tokenizer")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lw-gpu-train"))
    ap.add_argument("--budget", type=float, default=240, help="seconds; later steps are skipped")
    ap.add_argument("--cpu", action="store_true", help="tiny shapes on CPU (a dry run)")
    ap.add_argument("--steps", default="estimate,loss,fsdp,zero3")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device: run with --cpu for the dry run", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    folders = shapes(Path(args.model), args.work, args.cpu)
    emit(args.out, step="env", torch=torch.__version__,
         device=torch.cuda.get_device_name(0) if not args.cpu else "cpu",
         gpu_gb=round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
         if not args.cpu else None)
    for step in args.steps.split(","):
        left = args.budget - (time.monotonic() - START)
        if left < 20:
            emit(args.out, step=step, skipped=f"budget ({left:.0f} s left)")
            continue
        try:
            if step == "estimate":
                estimate_step(args.out, folders, args.work, args.cpu, 256 if args.cpu else 4096)
            elif step == "loss":
                loss_step(args.out, args.cpu)
            elif step in ("fsdp", "zero3"):
                if args.cpu:
                    emit(args.out, step=step, skipped="accelerate shards on GPUs only")
                else:
                    sharded_step(args.out, folders, args.work, step, left - 10)
            else:
                emit(args.out, step=step, error="unknown step")
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            emit(args.out, step=step, error=repr(exc)[:600])
    return 0


if __name__ == "__main__":
    sys.exit(main())
