"""How many weights a short bf16 run really changes (issue 13's update probe).

    r = bf16_update_probe("tiny-random", conversations, lr=1e-5, steps=30)
    r["frac_changed"]   # ~1.0 with fp32 weights + bf16 autocast; ~0.15 with pure-bf16 weights

Trains ``steps`` steps at a constant learning rate through ``lw.sft.train`` with ``bf16: true``
and ``save_dtype: float32``, then compares every parameter before (in the dtype training held
it) and after, in fp32. ``weights_dtype="bfloat16"`` measures the pure-bf16 weights that the kit
warns about. On CPU, bf16 runs through CPU autocast.
"""

import time
from pathlib import Path


def bf16_update_probe(model: str, data, lr: float = 1e-5, steps: int = 30,
                      weights_dtype: str = "float32", output_dir=None, max_length: int = 512,
                      **overrides) -> dict:
    """Fraction of weights that ``steps`` AdamW steps at ``lr`` change under a bf16 recipe.

    Args:
        model: a trainable model spec (``tiny-random``, ``smollm2-135m``, ``hf:<folder>``).
        data: conversations (list of ``{"messages"}``) or a JSONL path, as ``lw.sft.train``.
        weights_dtype: "float32" (the kit's default: fp32 weights, bf16 autocast) or
            "bfloat16" (pure-bf16 weights; warns).
        output_dir: where to train (default a folder under ``runs/probe``).
        overrides: more recipe ``train`` fields (e.g. ``per_device_train_batch_size``).
    Returns:
        ``{"frac_changed", "changed", "weights", "lr", "steps", "weights_dtype", "compute",
        "device", "seconds", "model_dir"}``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from lw.sft.config import model_path
    from lw.sft.precision import torch_dtype
    from lw.sft.train import train

    out = Path(output_dir or f"runs/probe/{model.replace(':', '_')}-{weights_dtype}-lr{lr:g}")
    recipe = {"model": model, "train": {
        "output_dir": str(out), "max_steps": steps, "learning_rate": lr,
        "lr_scheduler_type": "constant", "warmup_steps": 0, "weight_decay": 0.0, "bf16": True,
        "weights_dtype": weights_dtype, "save_dtype": "float32", "save_strategy": "no",
        "logging_steps": max(1, steps // 5), "max_length": max_length,
        "per_device_train_batch_size": 1, "seed": 0, **overrides}}
    start = time.perf_counter()
    result = train(recipe, data=data, progress=False, force=True)
    seconds = time.perf_counter() - start
    held = torch_dtype(result.stats["weights_dtype"])

    def params(path):
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        return dict(m.named_parameters())  # tied weights once

    before, after = params(model_path(model)), params(result.model_dir)
    changed = total = 0
    for name, b in before.items():
        b = b.detach().to(held).float()  # as training held it: a bf16 rounding is no update
        a = after[name].detach()
        changed += int((a != b).sum())
        total += b.numel()
    return {"frac_changed": changed / max(total, 1), "changed": changed, "weights": total,
            "lr": lr, "steps": steps, "weights_dtype": result.stats["weights_dtype"],
            "compute": result.stats["compute"], "device": _device(), "seconds": round(seconds, 1),
            "model_dir": str(result.model_dir)}


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
