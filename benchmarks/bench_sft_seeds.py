"""Claim 5 across training seeds and precisions: notebook 05's SFT trained again, then scored.

    python benchmarks/bench_sft_seeds.py RUN_FOLDER --seed 1 --precision bf16 [--size small]

Why: one fine-tuning run is one draw. Whether bf16 autocast training (``Size.train_options``)
changes claim 5 or a reseed does as much can only be told from several seeds. RUN_FOLDER is a
finished run's folder (``runs/small``): its ``data/`` (notebook 04's conversations) are mixed as
notebook 05 mixes them (seed 0), the SFT recipe trains at ``--seed`` in ``--precision`` into
``RUN_FOLDER/sft-seeds/<precision>-seed<seed>``, and the model answers notebook 05's prompts
(evaluation seed 0) into ``RUN_FOLDER/finetune_eval``, where the base model's answers are
reused. Prints one JSON line (also appended to ``RUN_FOLDER/sft-seeds/results.jsonl``): training
seconds, the SFT/base ratios of words and usable words and the S_l difference, each with its 95%
paired interval over the prompts, and how many SFT answers hit the budget. ~25 min per fp32
model and ~16 per bf16 one on 2 cores at ``small``, plus ~6 min of answers.
"""

import argparse
import json
import os
import time
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_folder")
    ap.add_argument("--seed", type=int, required=True, help="training seed")
    ap.add_argument("--precision", choices=("fp32", "bf16"), required=True,
                    help="bf16: bf16 autocast over fp32 weights (needs a CPU with bf16 or a GPU)")
    ap.add_argument("--size", default="small")
    args = ap.parse_args(argv)
    run = Path(args.run_folder).resolve()
    os.environ["LW_RUN_DIR"] = str(run)
    import lw
    from lw.llm import lifecycle

    size = lw.profiles.resolve_size(args.size)
    p = lw.profiles.get("05", size)
    out = run / "sft-seeds"
    recipe = lw.sft.load_recipe(lw.paths.home() / p.sft_recipe, **{
        "bf16": args.precision == "bf16", "model": size.model,
        "output_dir": str(out / f"{args.precision}-seed{args.seed}"), "loss_weighting": "token",
        "seed": args.seed, **p.sft_overrides})
    long_convs = lw.sft.load_conversations(str(run / "data" / "longwriter-kit.jsonl"))
    general = lw.sft.load_conversations(str(run / "data" / "general-self.jsonl"))
    start = time.perf_counter()
    sft = lw.sft.train(recipe, data=lw.sft.mix(long_convs, general, 0.25, seed=0))
    result = {"seed": args.seed, "precision": args.precision,
              "train_s": round(time.perf_counter() - start, 1)}
    rows = lw.paper.benchmarks.subset(lw.paper.benchmarks.load("longbench_write_en"),
                                      n=p.n_prompts, seed=0, min_length=2000)
    preds = {}
    for name, spec in {"base": size.model,
                       "SFT": lifecycle.checkpoint_spec(sft.spec, like=size.model)}.items():
        preds[name] = lw.longbench.run_model(
            spec, rows, run / "finetune_eval", size.batch_size, load_options=size.options(spec),
            max_new_tokens=p.max_new_tokens, temperature=0.5, seed=0,
            repetition_penalty=p.repetition_penalty)[1]
    lifecycle.release()
    for v in ("words", "usable_words", "S_l"):
        c = lw.stats.paired(*lw.stats.paired_values(preds["SFT"], preds["base"], v),
                            "difference" if v == "S_l" else "ratio", seed=0)
        result[v] = [round(c["estimate"], 3), round(c["low"], 3), round(c["high"], 3),
                     c["n_prompts"]]
    result["sft_truncated"] = sum(bool(r.get("truncated")) for r in preds["SFT"])
    line = json.dumps(result)
    print(line)
    with open(out / "results.jsonl", "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
