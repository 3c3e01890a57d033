"""Command line for a training stage: ``python -m lw.sft <recipe.yaml> [options]``.

    python -m lw.sft recipes/smollm2-135m/sft/config_full_cpu.yaml --data runs/small/data/longwriter-kit.jsonl
    python -m lw.sft recipes/qwen2.5-1.5b/sft/config_lora.yaml --set num_train_epochs=1 --set learning_rate=1e-4
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml \\
        -m lw.sft recipes/qwen2.5-7b/sft/config_full.yaml
    python -m lw.sft recipes/smollm2-135m/dpo/config_full_cpu.yaml --pairs runs/small/dpo/pairs.jsonl

``--set`` values are read as YAML (numbers, booleans, lists); keys are training fields or
``model``. The trained model lands in ``<output_dir>/final``.
"""

import argparse
import json
import sys

import yaml

from lw.errors import LwError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lw.sft", description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", help="a recipe YAML (see recipes/)")
    ap.add_argument("--data", help="training conversations (JSONL, datasets folder or hub:<id>)")
    ap.add_argument("--pairs", help="DPO stage: JSONL of preference pairs (lw.sft.dpo.make_pairs)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe value (repeatable)")
    ap.add_argument("--force", action="store_true", help="train again even if finished")
    args = ap.parse_args(argv)
    from lw.sft.config import load_recipe
    from lw.sft.dpo import train_dpo
    from lw.sft.train import train

    try:
        overrides = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise LwError(f"--set needs KEY=VALUE, got {item!r}.")
            overrides[key.strip()] = yaml.safe_load(value)
        recipe = load_recipe(args.recipe, **overrides)
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


if __name__ == "__main__":
    raise SystemExit(main())
