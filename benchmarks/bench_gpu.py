"""Issue 13's GPU figures side by side in one run: generation, packed SFT, the bf16 update probe.

    python benchmarks/bench_gpu.py [--config DIR] [--big] [--only gen|sft|probe]
                                   [--budget-s 280] [--out results.jsonl] [--tiny]

Models are random-init from a config, never downloaded: SmolLM2-135M's shape from ``--config``
(a folder with config.json and the tokenizer, e.g. ../shared/gpu-check/model) or from the
embedded model's cached folder (``lw.llm.embedded.smollm2_dir``); ``--big`` adds SmolLM2-1.7B's
shape to the generation runs (last, so the budget cuts it first). ``--tiny`` shrinks everything
to a 2-layer model and a few tokens: seconds on a CPU, for CI (tests/test_bench_gpu.py).

  gen    tokens/s at batch 1, 8, 64 (same-length prompts, replies forced to one length, greedy)
         of the kit's engine with CUDA graphs, the same engine eager, transformers' ``generate``
         (``engine="hf"``) and vLLM (a kit-managed server) where vLLM and CUDA are present.
         Target (issue 13): graphs at batch 64 >= 5x the 945 tokens/s eager gave on an H200.
  sft    ``lw.sft.train`` packed vs unpacked on the LongWriter length mix (a third of the
         conversations 20-100% of max_length, like LongWriter-6k's 2k-10k-token answers, the
         rest 1-10%, like general chat data), one epoch each, at equal tokens per step: one
         packed row of max_length a step vs the batch size whose padded batches come nearest
         that. Useful tokens/s = target (loss) tokens / train seconds. Target: packed >= 1.3x.
  probe  ``lw.sft.probe.bf16_update_probe``: share of weights a bf16 recipe at lr 1e-5
         (constant) changes in a few steps, with the kit's fp32 weights and with pure-bf16
         weights. Target: >= 90% with fp32 weights (pure bf16 gave 15% on an H200).

Measured on one H200 (2026-11-26, torch 2.11, transformers 5.24, ``--big``, 236 s in all; vLLM
not installed there): 135M shape at batch 1 / 8 / 64, 128 new tokens: graphs 299 / 2,194 /
14,954 tokens/s, eager 19 / 152 / 1,085, ``generate`` 19 / 144 / 1,189 (graphs 13.8x eager at
batch 64, 15.8x the 945 of issue 13); 1.7B shape: graphs 276 / 1,994 / 10,833, eager 18 / 150 /
1,109. SFT at max_length 8192: packed (varlen) 50,629 useful tokens/s, unpacked (batch 2)
12,123: 4.18x. Probe, 10 steps: 99.999% of weights changed with fp32 weights, 15.1% with bf16.

Every measurement is printed as one JSON line as soon as it is taken (and appended to ``--out``);
a setting this kit cannot apply is recorded as "n/a: <why>", never skipped silently. The run
stops starting measurements when ``--budget-s`` would be overrun and prints the ratios it has.
"""

import argparse
import gc
import inspect
import json
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch
import transformers

import lw

SHAPES = {  # overrides of the source config (SmolLM2-135M's)
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    "135m": {},
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                 num_attention_heads=32, num_key_value_heads=32, head_dim=64),
}
WORDS = ("the of and to in is that for it as was with be by on not this are or from at which "
         "but have an they you were one all we can has more if when would who will so out up "
         "into do than time only new about other then some two may first any like now over "
         "also years after most made many before must back where much way well down each just "
         "people how little state good very make world still see work long here get life day "
         "same know last great old year off come right used take house river storm light ship "
         "city water tree stone road night garden window letter music mountain valley forest "
         "winter summer harbour market bridge island village").split()


class Bench:
    """Records (printed and appended to ``out`` as JSON lines) and the time budget."""

    def __init__(self, budget_s: float, out: Path | None):
        self.start, self.budget, self.out, self.records = time.perf_counter(), budget_s, out, []

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def record(self, **fields) -> dict:
        fields["t"] = round(time.perf_counter() - self.start, 1)
        self.records.append(fields)
        line = json.dumps(fields, default=str)
        print(line, flush=True)
        if self.out:
            with open(self.out, "a") as f:
                f.write(line + "\n")
        return fields


def ratio(a, b):
    """a/b rounded, or "n/a" when either is missing."""
    return round(a / b, 3) if isinstance(a, int | float) and isinstance(b, int | float) and b \
        else "n/a"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- models ----------------------------------------------------------------------------------
def source_folder(config: str | None) -> Path:
    """The folder whose config and tokenizer the random models take."""
    if config:
        return Path(config)
    from lw.llm.embedded import smollm2_dir

    try:
        return smollm2_dir()
    except lw.errors.LwError as exc:
        raise lw.errors.LwError(f"{exc} Or pass --config with a folder holding SmolLM2's "
                                "config.json and tokenizer (e.g. ../shared/gpu-check/model).") from exc


def build(src: Path, shape: str, folder: Path, dtype=torch.float32) -> Path:
    """A random-init model of ``shape`` saved (with the tokenizer) to ``folder``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    cfg = AutoConfig.from_pretrained(src)
    for key, value in SHAPES[shape].items():
        setattr(cfg, key, value)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    try:
        model.generation_config = GenerationConfig.from_pretrained(src)
    except OSError:  # no generation_config.json: the config's own token ids serve
        pass
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(src).save_pretrained(folder)
    del model
    free()
    return folder


# -- gen -------------------------------------------------------------------------------------
def prompts(tok, n: int, words: int, seed: int) -> list[str]:
    """``n`` distinct prompts of the same token length (single-token words)."""
    vocab = [w for w in WORDS if len(tok(" " + w, add_special_tokens=False).input_ids) == 1]
    rng = random.Random(seed)
    return [f"Topic {i:04d}: " + " ".join(rng.choice(vocab) for _ in range(words))
            for i in range(n)]


def local_paths(base) -> dict:
    """label -> model (or "n/a: why") for the kit's local paths, all on ``base``'s weights."""
    from lw.llm.hf import HFChatModel

    def local(**options):
        return HFChatModel(base.model, base.tokenizer, base.spec, batch_size=1,
                           prefix_cache_bytes=0, **options)

    if "cuda_graphs" not in inspect.signature(HFChatModel.__init__).parameters:
        graphs, eager = "n/a: this kit's HFChatModel has no cuda_graphs option", local()
    elif not base.device.startswith("cuda"):
        graphs = f"n/a: CUDA graphs need CUDA (the model is on {base.device})"
        eager = local(cuda_graphs=False)
    else:
        graphs, eager = local(cuda_graphs=True), local(cuda_graphs=False)
    return {"graphs": graphs, "eager": eager, "hf": local(engine="hf")}


def start_vllm(folder: Path, batch: int, bench: Bench):
    """A kit-managed vLLM server on ``folder`` in bf16, or "n/a: why"."""
    from lw.llm.vllm_backend import vllm_available

    reason = vllm_available()
    if reason:
        return f"n/a: {reason}"
    try:
        return lw.llm.load(f"vllm:{folder}", dtype="bfloat16", max_num_seqs=max(8, batch),
                           concurrency=batch, gpu_memory_utilization=0.4,
                           start_timeout=max(30.0, bench.left() - 30))
    except Exception as exc:  # noqa: BLE001 - reported; the other paths still run
        return f"n/a: {exc!r}"[:400]


def gen_rows(bench: Bench, name: str, folder: Path, batches, new: int, words: int) -> None:
    """Every path at every batch size, then the ratios per batch size."""
    base = lw.llm.load(f"hf:{folder}", batch_size=1, prefix_cache_bytes=0)
    models = local_paths(base)
    vllm = None  # started once, at the first batch size that has time left for it
    try:
        for b in batches:
            if bench.left() < (5 if new < 32 else 25):
                bench.record(section="gen", model=name, batch=b, skipped="budget")
                continue
            ps = prompts(base.tokenizer, b, words, seed=b)
            if vllm is None:
                vllm = start_vllm(folder, max(batches), bench)
            row = {label: measure_gen(bench, name, label, model, ps, new)
                   for label, model in {**models, "vllm": vllm}.items()}
            bench.record(section="gen", kind="ratios", model=name, batch=b, new_tokens=new,
                         graphs_tok_s=row["graphs"], **{"graphs/eager": ratio(row["graphs"], row["eager"]),
                            "graphs/hf": ratio(row["graphs"], row["hf"]),
                            "eager/hf": ratio(row["eager"], row["hf"]),
                            "vllm/graphs": ratio(row["vllm"], row["graphs"])})
    finally:
        if vllm is not None and hasattr(vllm, "close"):
            vllm.close()
        del base, models
        free()


def measure_gen(bench: Bench, name: str, label: str, model, ps: list[str], new: int):
    """Tokens/s of one path after a warm-up call (kernels, allocator, CUDA-graph capture), or
    its "n/a" reason; one JSON record either way."""
    fields = dict(section="gen", model=name, path=label, batch=len(ps), new_tokens=new)
    if isinstance(model, str):
        bench.record(**fields, tok_s=model)
        return model
    if hasattr(model, "batch_size"):
        model.batch_size = len(ps)
    cfg = dict(max_new_tokens=new, min_new_tokens=new, temperature=0.0, progress=False)
    # The warm-up of the graph path runs the full length: graphs are captured per cache-width
    # bucket as replies grow. The eager paths only need their kernels loaded: 4 tokens.
    warm = cfg if label == "graphs" else {**cfg, "max_new_tokens": 4, "min_new_tokens": 4}
    try:
        start = time.perf_counter()
        model.generate(ps, **warm)
        sync()
        first = time.perf_counter() - start
        start = time.perf_counter()
        outs = model.generate(ps, **cfg)
        sync()
        seconds = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - one path failing must not hide the others
        bench.record(**fields, tok_s=f"n/a: {exc!r}"[:400])
        return "n/a"
    done = sum(o.completion_tokens for o in outs)
    errors = sorted({o.error for o in outs if o.error})
    tok_s = round(done / seconds, 1) if not errors else f"n/a: {errors[0]}"[:400]
    bench.record(**fields, tok_s=tok_s, seconds=round(seconds, 3), first_call_s=round(first, 2),
                 completion_tokens=done, device=getattr(model, "device", None),
                 dtype=str(model.model.dtype) if hasattr(model, "model") else None)
    return tok_s


# -- sft -------------------------------------------------------------------------------------
def longwriter_mix(tok, n: int, max_length: int, seed: int = 0) -> list[dict]:
    """``n`` random-word conversations: a third with answers of 20-100% of ``max_length``
    tokens (LongWriter-6k's 2k-10k-token answers at 10k), the rest 1-10% (general chat)."""
    vocab = [w for w in WORDS if len(tok(" " + w, add_special_tokens=False).input_ids) == 1]
    overhead = len(tok.apply_chat_template([{"role": "user", "content": "Write 0000."},
                                            {"role": "assistant", "content": "x"}]))
    rng = random.Random(seed)
    out = []
    for i in range(n):
        share = rng.uniform(0.2, 1.0) if i % 3 == 0 else rng.uniform(0.01, 0.1)
        words = max(1, min(int(share * max_length), max_length - overhead - 8) - overhead)
        reply = " ".join(rng.choice(vocab) for _ in range(words))
        out.append({"messages": [{"role": "user", "content": f"Write {i:04d}."},
                                 {"role": "assistant", "content": reply}]})
    rng.shuffle(out)
    return out


def tokens_per_step(lengths: list[int], batch: int, tries: int = 20) -> float:
    """Mean padded tokens a step of ``batch`` rows computes (each batch padded to its
    longest), over random orders as the Trainer's sampler draws them."""
    rng, total, steps = random.Random(0), 0, 0
    for _ in range(tries):
        order = rng.sample(lengths, len(lengths))
        for i in range(0, len(order), batch):
            chunk = order[i:i + batch]
            total += len(chunk) * max(chunk)
            steps += 1
    return total / steps


def sft_pair(bench: Bench, folder: Path, convs: list[dict], max_length: int, work: Path,
             warm: bool) -> None:
    """Packed vs unpacked at equal tokens per step; records both runs and the ratio."""
    from transformers import AutoTokenizer

    from lw.sft import pack, tokenize

    tok = AutoTokenizer.from_pretrained(folder)
    examples, _ = tokenize(convs, tok, max_length)
    packed = tokens_per_step([sum(map(len, row)) for row in pack(examples, max_length)], 1)
    lengths = [len(e) for e in examples]
    batch = min(range(1, 65), key=lambda b: abs(tokens_per_step(lengths, b) - packed))
    plan = {"packed": dict(packing=True, per_device_train_batch_size=1),
            "unpacked": dict(packing=False, per_device_train_batch_size=batch)}
    bench.record(section="sft", kind="plan", conversations=len(convs), max_length=max_length,
                 tokens_per_step={"packed": round(packed),
                                  "unpacked": round(tokens_per_step(lengths, batch))},
                 unpacked_batch=batch)
    useful = {}
    for label, over in plan.items():
        if bench.left() < (10 if not warm else 45):
            bench.record(section="sft", run=label, skipped="budget")
            continue
        if warm:  # first steps pay for CUDA set-up and kernel compilation (flex): not counted
            sft_run(folder, convs[:8], max_length, work / f"warm-{label}", max_steps=2, **over)
        result, wall = sft_run(folder, convs, max_length, work / label, **over)
        st = result.stats
        secs = st.get("train_seconds")
        useful[label] = round(st["target_tokens"] / secs, 1) if secs else "n/a"
        bench.record(section="sft", run=label, useful_tok_s=useful[label], train_seconds=secs,
                     wall_s=round(wall, 1), rows=st.get("rows"), target_tokens=st["target_tokens"],
                     tokens=st.get("tokens"), batch=over["per_device_train_batch_size"],
                     packed_attention=st.get("packed_attention", "n/a: not in the train stats"),
                     compute=st.get("compute"), weights_dtype=st.get("weights_dtype"),
                     final_loss=next((h["loss"] for h in reversed(result.log_history)
                                      if "loss" in h), None))
        free()
    bench.record(section="sft", kind="ratios",
                 **{"packed/unpacked": ratio(useful.get("packed"), useful.get("unpacked"))})


def sft_run(folder: Path, convs, max_length: int, out: Path, **over):
    """One epoch (or ``max_steps``) of ``lw.sft.train``; (result, wall seconds)."""
    recipe = {"model": f"hf:{folder}", "train": {
        "output_dir": str(out), "max_length": max_length, "num_train_epochs": 1,
        "gradient_accumulation_steps": 1, "learning_rate": 1e-5, "lr_scheduler_type": "constant",
        "warmup_steps": 0, "bf16": torch.cuda.is_available(), "save_strategy": "no",
        "logging_steps": 1, "dataloader_num_workers": 0, "seed": 0, **over}}
    start = time.perf_counter()
    result = lw.sft.train(recipe, data=convs, progress=False, force=True)
    return result, time.perf_counter() - start


# -- probe -----------------------------------------------------------------------------------
def probe(bench: Bench, folder: Path, convs, steps: int, max_length: int, work: Path) -> None:
    """Share of weights changed with fp32 weights (the kit's bf16 recipes) and pure bf16."""
    try:
        from lw.sft.probe import bf16_update_probe
    except ImportError as exc:
        bench.record(section="probe", kind="ratios", frac_changed=f"n/a: {exc}")
        return
    frac = {}
    for weights in ("float32", "bfloat16"):
        if bench.left() < (10 if steps < 10 else 40):
            bench.record(section="probe", weights_dtype=weights, skipped="budget")
            continue
        r = bf16_update_probe(f"hf:{folder}", convs, lr=1e-5, steps=steps,
                              weights_dtype=weights, output_dir=work / f"probe-{weights}",
                              max_length=max_length)
        frac[weights] = round(r["frac_changed"], 4)
        bench.record(section="probe", **{k: v for k, v in r.items() if k != "model_dir"})
        free()
    bench.record(section="probe", kind="ratios", lr=1e-5, steps=steps,
                 frac_changed=frac.get("float32", "n/a"),
                 frac_changed_bf16_weights=frac.get("bfloat16", "n/a"),
                 **{"fp32/bf16_weights": ratio(frac.get("float32"), frac.get("bfloat16"))})


# -- main ------------------------------------------------------------------------------------
def summary(bench: Bench) -> None:
    print("\n== ratios (section, setting: figures)")
    for r in bench.records:
        if r.get("kind") != "ratios":
            continue
        where = f"{r['model']} B={r['batch']}" if r["section"] == "gen" else ""
        shown = {k: v for k, v in r.items() if k not in ("section", "kind", "model", "batch", "t")}
        print(f"{r['section']:<6} {where:<12} " + "  ".join(f"{k} {v}" for k, v in shown.items()))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="folder with SmolLM2's config.json and tokenizer "
                    "(default: the embedded model's cached folder)")
    ap.add_argument("--tiny", action="store_true", help="2-layer model, few tokens (CPU, CI)")
    ap.add_argument("--big", action="store_true", help="also generate with the 1.7B shape")
    ap.add_argument("--only", choices=("gen", "sft", "probe"))
    ap.add_argument("--budget-s", type=float, default=280.0, help="stop starting measurements "
                    "that would not finish in this many seconds")
    ap.add_argument("--out", type=Path, help="append every record to this JSONL file too")
    ap.add_argument("--work", type=Path, help="folder for models and runs (default: a temporary "
                    "one, removed at the end)")
    args = ap.parse_args(argv)
    bench = Bench(args.budget_s, args.out)
    work = args.work or Path(tempfile.mkdtemp(prefix="lw-bench-gpu-"))
    cuda = torch.cuda.is_available()
    bench.record(section="env", lw=lw.__version__, torch=torch.__version__,
                 transformers=transformers.__version__,
                 device=torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
                 threads=torch.get_num_threads(), tiny=args.tiny)
    try:
        run(bench, args, source_folder(args.config), work)
    except KeyboardInterrupt:  # stopped from outside (timeout -s INT): keep what was measured
        bench.record(section="run", stopped="interrupted")
    finally:
        summary(bench)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run(bench: Bench, args, src: Path, work: Path) -> None:
    size = "tiny" if args.tiny else "135m"
    folder = build(src, size, work / size)
    want = {args.only} if args.only else {"gen", "sft", "probe"}
    if "gen" in want:
        gen_rows(bench, size, folder, (1, 4) if args.tiny else (1, 8, 64),
                 new=8 if args.tiny else 128, words=12 if args.tiny else 90)
    if {"sft", "probe"} & want:
        from transformers import AutoTokenizer

        max_length = 256 if args.tiny else 8192
        convs = longwriter_mix(AutoTokenizer.from_pretrained(folder), 12 if args.tiny else 64,
                               max_length)
        if "sft" in want:
            sft_pair(bench, folder, convs, max_length, work, warm=not args.tiny)
        if "probe" in want:
            probe(bench, folder, convs, steps=4 if args.tiny else 10,
                  max_length=256 if args.tiny else 2048, work=work)
    if args.big and "gen" in want and not args.tiny:
        big = build(src, "1.7b", work / "1.7b", dtype=torch.bfloat16)
        gen_rows(bench, "1.7b", big, (1, 8, 64), new=128, words=90)


if __name__ == "__main__":
    main()
