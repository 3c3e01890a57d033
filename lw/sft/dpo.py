"""DPO on preference pairs (paper section 4.2, LongWriter-9B-DPO): training only. The pairs
come from ``lw.data.pairs`` (sampled, judged and paired there):

    result = train_dpo("recipes/smollm2-135m/dpo/config_full_cpu.yaml", pairs,
                       model=f"hf:{sft_dir}", output_dir=...)

``train_dpo`` skips a finished run with the same recipe and pairs, and resumes an interrupted
one from a checkpoint.
Precision as in SFT (``lw.sft.precision``): fp32 weights with bf16 autocast where ``bf16: true``.
"""

from pathlib import Path

from lw.errors import LwError


def train_dpo(recipe, pairs: list[dict], progress: bool = True, force: bool = False,
              **overrides):
    """DPO with TRL's ``DPOTrainer`` (reference = the starting model) on ``pairs``; saves the
    model to ``<output_dir>/final``. Returns a ``lw.sft.TrainResult``."""
    from trl import DPOTrainer

    from lw.sft import memory, precision
    from lw.sft.config import Recipe, load_recipe
    from lw.sft.train import _last_checkpoint, _runtime, fingerprint, finished, load_model, save

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, **overrides)
    if recipe.stage != "dpo":
        raise LwError(f"train_dpo needs a recipe with stage: dpo; {recipe.source} is "
                      f"{recipe.stage!r}.")
    if not pairs:
        raise LwError("no preference pairs: sample more answers per instruction or lower "
                      "min_margin in make_pairs.")
    args = recipe.train
    args.disable_tqdm = not progress
    clean = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]
    key = fingerprint(recipe, clean)
    if (done := finished(args.output_dir, key)) and not force:
        return done
    memory.check(recipe)  # refuse what cannot fit before loading weights
    plan = precision.plan(args)  # fp32 weights, bf16 autocast where bf16: true
    tokenizer, model = load_model(recipe.model, args, recipe.lora, plan)
    # The reference model (built by TRL in the policy's dtype) is never updated.
    trainer = DPOTrainer(model=model, args=args, train_dataset=_pairs_dataset(clean, key, args),
                         processing_class=tokenizer)
    checkpoint = _last_checkpoint(Path(args.output_dir), key, args)
    trainer.train(resume_from_checkpoint=checkpoint)
    stats = {"pairs": len(clean), "beta": args.beta, "lora": recipe.lora is not None,
             **plan.stats(), "resumed_from": checkpoint,
             "train_seconds": _runtime(trainer.state.log_history)}
    return save(trainer, tokenizer, recipe, key, stats, plan)


def _pairs_dataset(pairs: list[dict], key: str, args):
    """The pairs as a ``datasets.Dataset``. Under several processes rank 0 stores them in
    ``<output_dir>/lw_pairs-<fingerprint>`` and every rank loads that folder: TRL tokenizes
    on the main process first, and on a dataset kept on disk its result is cached there, so the
    other ranks load the tokens instead of tokenizing every pair again (an in-memory dataset
    has no cache). ``lw.sft.train.save`` removes the folder when the run is done."""
    import os
    import shutil

    from datasets import Dataset, load_from_disk

    from lw.sft.train import _rank0_first, _world_size

    if _world_size(args) == 1:
        return Dataset.from_list(pairs)
    out = Path(args.output_dir)
    folder = out / f"lw_pairs-{key}"
    with _rank0_first(args) as rank0:
        if rank0 and not (folder / "dataset_info.json").exists():
            for old in out.glob("lw_pairs-*"):
                shutil.rmtree(old)
            tmp = out / f".lw_pairs-{key}.{os.getpid()}.tmp"
            Dataset.from_list(pairs).save_to_disk(str(tmp))
            os.replace(tmp, folder)  # whole or absent, for the ranks that wait and for reruns
        return load_from_disk(str(folder))

