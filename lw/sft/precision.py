"""Training precision: fp32 weights and optimizer state, bf16 compute, and the saved dtype.

AdamW's update at lr 1e-5 is about 1e-5 per weight; a bf16 weight of size 0.02 has a step of
~8e-5, so an update applied to bf16 weights in place rounds back to the old value. Measured
(issue 13): with bf16 weights only 15% of the weights changed after 10 steps at lr 1e-5 on an
H200, 15.5% after 30 steps on CPU with tiny-random. The kit therefore keeps the weights (and
AdamW's moments) in fp32 and computes in bf16 through autocast, which transformers' Trainer (and
TRL's DPOTrainer) turn on when ``bf16: true`` and the weights are fp32; on CPU that needs
``use_cpu: true``, which ``load_recipe`` sets on machines without CUDA.

    plan = precision.plan(recipe.train)          # Precision(weights="float32", compute=...)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=plan.torch_weights)
    ... train ...
    precision.cast_for_save(model, plan)         # or rewrite_saved(folder, plan.save) when sharded

Exceptions: under DeepSpeed with bf16 the model is loaded in bf16, because DeepSpeed's optimizer
keeps fp32 master copies itself; under FSDP the fp32 weights are sharded and FSDP's mixed
precision casts the compute. ``weights_dtype: bfloat16`` asks for pure-bf16 weights (half the
memory of weights and AdamW state) and warns what it loses.
"""

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from lw.errors import LwError

WEIGHTS_DTYPES = ("float32", "bfloat16")
SAVE_DTYPES = ("auto", "float32", "bfloat16", "float16")
WEIGHTS_HELP = ("dtype of the trained weights and optimizer state: 'float32' (default; with bf16: "
                "true the compute is bf16 by autocast) or 'bfloat16' (pure bf16: AdamW then loses "
                "updates smaller than half a bf16 step, most of them at lr 1e-5)")
SAVE_HELP = ("dtype of the saved model: 'auto' (bf16 when the recipe computes in bf16, else fp32), "
             "'float32', 'bfloat16' or 'float16'")


def check_precision(args) -> None:
    """Refuse precision fields that name no dtype the kit knows."""
    if args.weights_dtype not in WEIGHTS_DTYPES:
        raise LwError(f"weights_dtype must be one of {WEIGHTS_DTYPES}, got {args.weights_dtype!r}.")
    if args.save_dtype not in SAVE_DTYPES:
        raise LwError(f"save_dtype must be one of {SAVE_DTYPES}, got {args.save_dtype!r}.")

PURE_BF16_WARNING = (
    "weights_dtype: bfloat16 trains bf16 weights in place: an AdamW update smaller than half a "
    "bf16 step of a weight (~0.4% of its size) is rounded away, so at lr 1e-5 most weights never "
    "change (15% changed in 10 steps on an H200, issue 13). It saves the memory of fp32 weights "
    "and optimizer state; leave weights_dtype out (fp32 weights, bf16 autocast) unless that "
    "memory is what you need.")


@dataclass
class Precision:
    """How a run holds, computes and saves its weights (all dtypes as names, e.g. "float32")."""

    weights: str  # the dtype the model is loaded and trained in
    compute: str  # "bf16 autocast", "fp16 autocast", "bf16", "fp32" or a DeepSpeed note
    save: str  # the dtype of the saved model
    sharding: str | None  # "deepspeed", "fsdp" or None

    @property
    def torch_weights(self):
        return torch_dtype(self.weights)

    def stats(self) -> dict:
        return {"weights_dtype": self.weights, "compute": self.compute, "save_dtype": self.save,
                "sharding": self.sharding}


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def sharding(args) -> str | None:
    """"deepspeed" or "fsdp" when the run is sharded by one (recipe or ``accelerate launch``)."""
    if getattr(args, "deepspeed_plugin", None) is not None or getattr(args, "deepspeed", None):
        return "deepspeed"
    if getattr(args, "fsdp", None) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in (
            "1", "true", "yes"):
        return "fsdp"
    return None


def plan(args) -> Precision:
    """The precision a training config asks for (warns when it asks for pure-bf16 weights).

    Args:
        args: an ``SFTConfig`` or the kit's DPO config (``bf16``, ``fp16``, ``weights_dtype``,
            ``save_dtype``).
    """
    bf16, fp16 = bool(getattr(args, "bf16", False)), bool(getattr(args, "fp16", False))
    asked = getattr(args, "weights_dtype", "float32")
    shard = sharding(args)
    if asked == "bfloat16":
        if fp16:
            raise LwError("fp16: true needs fp32 weights (its gradient scaler refuses bf16 "
                          "ones): drop weights_dtype: bfloat16, or use bf16: true instead.")
        warnings.warn(PURE_BF16_WARNING, UserWarning, stacklevel=3)
        weights, compute = "bfloat16", "bf16"
    elif shard == "deepspeed" and bf16:
        weights, compute = "bfloat16", "bf16 (DeepSpeed keeps fp32 master weights)"
    else:
        weights = "float32"
        compute = "bf16 autocast" if bf16 else "fp16 autocast" if fp16 else "fp32"
    save = getattr(args, "save_dtype", "auto")
    if save == "auto":
        save = "bfloat16" if compute.startswith("bf16") else "float32"
    return Precision(weights=weights, compute=compute, save=save, sharding=shard)


def cast_for_save(model, p: Precision) -> None:
    """Cast an unsharded model to the dtype it is to be saved in (training is over). A sharded
    model is saved as its engine gathers it, then rewritten with ``rewrite_saved``."""
    if p.sharding is None:
        model.to(torch_dtype(p.save))


def saved_dtype(folder) -> str | None:
    """The dtype of the floating-point tensors in a saved model folder (None if none found;
    "mixed" if they differ)."""
    from safetensors import safe_open

    names = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}
    seen = set()
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                code = f.get_slice(key).get_dtype()
                if code in names:
                    seen.add(names[code])
    return None if not seen else seen.pop() if len(seen) == 1 else "mixed"


def rewrite_saved(folder, dtype: str) -> None:
    """Rewrite a saved model's floating-point tensors (every ``*.safetensors`` file) and its
    config's ``dtype`` in ``dtype``: for models that DeepSpeed or FSDP gathered in their own."""
    from safetensors.torch import load_file, save_file

    target = torch_dtype(dtype)
    for file in sorted(Path(folder).glob("*.safetensors")):
        tensors = load_file(str(file))
        save_file({k: v.to(target) if v.is_floating_point() else v for k, v in tensors.items()},
                  str(file), metadata={"format": "pt"})
    config = Path(folder) / "config.json"
    if config.exists():
        data = json.loads(config.read_text())
        data["dtype"] = dtype
        data.pop("torch_dtype", None)
        config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
