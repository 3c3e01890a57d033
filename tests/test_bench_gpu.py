"""benchmarks/bench_gpu.py --tiny: every section runs on a CPU and prints its ratios."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_run_prints_every_sections_ratios(tmp_path):
    """~11 s on 2 CPU cores. The time limit only catches a hang; it is not a speed check."""
    out = tmp_path / "bench.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny",
                           "--budget-s", "600", "--out", str(out), "--work", str(tmp_path / "w")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{\"")]
    assert printed == [json.loads(line) for line in out.read_text().splitlines()]
    ratios = {r["section"] + str(r.get("batch", "")): r for r in printed
              if r.get("kind") == "ratios"}
    assert set(ratios) == {"gen1", "gen4", "sft", "probe"}
    for key in ("gen1", "gen4"):
        row = ratios[key]
        assert row["eager/hf"] > 0  # both local paths ran on the CPU
        if not torch.cuda.is_available():
            assert row["graphs/eager"] == "n/a" and row["vllm/graphs"] == "n/a"
    why = [r["tok_s"] for r in printed if r.get("path") == "graphs"]
    assert why and all(isinstance(w, float) or w.startswith("n/a: ") for w in why)
    assert ratios["sft"]["packed/unpacked"] > 0
    runs = {r["run"]: r for r in printed if r["section"] == "sft" and "run" in r}
    assert runs["packed"]["target_tokens"] == runs["unpacked"]["target_tokens"] > 0
    assert runs["packed"]["packed_attention"] and runs["unpacked"]["packed_attention"] is None
    probe = ratios["probe"]
    assert 0 <= probe["frac_changed_bf16_weights"] <= probe["frac_changed"] <= 1
    summary = proc.stdout.split("== ratios")[-1]
    for name in ("graphs/eager", "eager/hf", "vllm/graphs", "packed/unpacked", "frac_changed"):
        assert name in summary
