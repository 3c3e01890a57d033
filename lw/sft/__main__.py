"""Command line for a training stage: ``python -m lw.sft <recipe.yaml> [options]``.

    python -m lw.sft recipes/smollm2-135m/sft/config_full_cpu.yaml --data runs/small/data/longwriter-kit.jsonl
    python -m lw.sft recipes/qwen2.5-1.5b/sft/config_lora.yaml --set num_train_epochs=1 --set learning_rate=1e-4
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml \\
        -m lw.sft recipes/qwen2.5-7b/sft/config_full.yaml
    python -m lw.sft recipes/smollm2-135m/dpo/config_full_cpu.yaml --pairs runs/small/dpo/pairs.jsonl

``--set`` values are read as YAML (numbers, booleans, lists); keys are training fields or
``model``. A value stays the string it was typed as where the field takes a string and YAML
would make it something the field does not take (``--set save_strategy=no``, not ``false``).
The trained model lands in ``<output_dir>/final``.

``--dry-run`` prints the per-GPU memory estimate (``lw.sft.memory``) from the model's config.json
alone and exits 1 when it does not fit ``--gpu-memory`` GB, 0 when it does:

    python -m lw.sft recipes/qwen2.5-7b/sft/config_full.yaml --dry-run --gpus 8 --gpu-memory 80

A real run refuses up front what that estimate says cannot fit on the visible GPU(s);
``--ignore-memory-check`` runs it anyway.
"""

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from pathlib import Path

import yaml

from lw.errors import LwError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lw.sft", description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", help="a recipe YAML (see recipes/)")
    ap.add_argument("--data", help="training conversations (JSONL, datasets folder or hub:<id>)")
    ap.add_argument("--pairs", help="DPO stage: JSONL of preference pairs (lw.data.pairs.make_pairs)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe value (repeatable)")
    ap.add_argument("--force", action="store_true", help="train again even if finished")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the memory estimate per GPU and exit (1 if it does not fit)")
    ap.add_argument("--gpus", type=int, default=1, help="dry run: GPUs the run is spread over")
    ap.add_argument("--gpu-memory", type=float, metavar="GB",
                    help="dry run: memory of one GPU (default: the visible GPU's, if any)")
    ap.add_argument("--sharding", choices=("single", "ddp", "zero3", "fsdp"),
                    help="dry run: how the GPUs share the model (default: from the recipe; ddp "
                         "for several GPUs)")
    ap.add_argument("--offload", choices=("optimizer", "param"),
                    help="dry run: ZeRO-3/FSDP offload to host RAM")
    ap.add_argument("--ignore-memory-check", action="store_true",
                    help="train even if the memory estimate says it will not fit")
    args = ap.parse_args(argv)
    from lw.sft import memory
    from lw.sft.config import load_recipe
    from lw.sft.dpo import train_dpo
    from lw.sft.train import train

    try:
        overrides = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise LwError(f"--set needs KEY=VALUE, got {item!r}.")
            overrides[key.strip()] = _value(args.recipe, overrides, key.strip(), value)
        recipe = load_recipe(args.recipe, **overrides)
        if args.dry_run:
            est = memory.estimate(recipe, gpus=args.gpus, sharding=args.sharding,
                                  gpu_memory_gb=args.gpu_memory or _visible_gpu_gb(),
                                  offload=args.offload)
            print(f"[lw.sft] memory estimate for {args.recipe} ({recipe.model}):")
            print(est.table())
            if est.fits is False:
                print(f"[lw.sft] does not fit: short by {est.shortfall_gb:.1f} GB per GPU",
                      file=sys.stderr)
                return 1
            return 0
        if args.ignore_memory_check:  # in the environment, so every launched rank sees it
            os.environ[memory.IGNORE_VAR] = "1"
        if recipe.stage == "dpo":
            if not args.pairs:
                raise LwError("a dpo recipe needs --pairs <jsonl of preference pairs>.")
            with open(args.pairs, encoding="utf-8") as f:
                pairs = [json.loads(line) for line in f if line.strip()]
            result = train_dpo(recipe, pairs, force=args.force)
        else:
            result = train(recipe, data=args.data, force=args.force)
    except LwError as exc:
        print(f"[lw.sft] stopped: {exc}", file=sys.stderr)
        return 1
    print(f"[lw.sft] {'already trained' if result.skipped else 'trained'}: {result.model_dir}"
          f"\n[lw.sft] load it with lw.llm.load({result.spec!r})")
    print(json.dumps(result.stats, indent=1, default=str))
    return 0


def _value(recipe_path: str, overrides: dict, key: str, text: str):
    """``text`` read as YAML, unless the field ``key`` takes a string and not what YAML made of
    it: YAML reads ``no``/``off`` as false, which transformers then rejects for
    ``save_strategy``."""
    value = yaml.safe_load(text)
    if isinstance(value, str) or key in ("model", "stage", "lora", "data"):
        return value
    allowed = _field_types(recipe_path, overrides, key)
    if allowed is None or str not in allowed or _admits(allowed, value):
        return value
    return text


def _field_types(recipe_path: str, overrides: dict, key: str) -> set | None:
    """The classes the training config's field ``key`` accepts (None if no such field)."""
    from lw.sft.config import SFTConfig, _dpo_config

    stage = overrides.get("stage")
    if stage is None and Path(recipe_path).exists():
        stage = (yaml.safe_load(Path(recipe_path).read_text()) or {}).get("stage", "sft")
    cls = _dpo_config() if stage == "dpo" else SFTConfig
    found = {f.name: f.type for f in dataclasses.fields(cls)}.get(key)
    if found is None:
        return None
    if isinstance(found, str):  # a postponed annotation: resolve it against the class's module
        try:
            found = typing.get_type_hints(cls)[key]
        except Exception:
            return None
    out = set()
    for t in _flatten(found):
        origin = typing.get_origin(t) or t
        if isinstance(origin, type):
            out.add(origin)
    return out


def _flatten(t):
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return [x for arg in typing.get_args(t) for x in _flatten(arg)]
    return [t]


def _admits(allowed: set, value) -> bool:
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):  # a bool is an int to isinstance; only a bool field takes it
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True
    return any(isinstance(value, cls) for cls in allowed)


def _visible_gpu_gb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 1e9


if __name__ == "__main__":
    raise SystemExit(main())
