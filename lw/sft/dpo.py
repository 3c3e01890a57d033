"""Preference pairs for long writing and DPO on them (paper section 4.2, LongWriter-9B-DPO).

The paper samples 4 answers per long-writing instruction, scores each by a quality reward
combined with the length score, and takes the best as chosen and another as rejected. Here:

    samples = sample(model, rows, folder, n_samples=4, max_new_tokens=2048)
    scored = score(samples, judge_model, folder)     # S_l, S_q and reward = (S_l + S_q) / 2
    pairs = make_pairs(scored)                       # best vs worst, when they differ enough
    result = train_dpo("recipes/smollm2-135m/dpo/config_full_cpu.yaml", pairs,
                       model=f"hf:{sft_dir}", output_dir=...)

Sampling and judging are resumable (files named by model and settings); ``train_dpo`` skips a
finished run with the same recipe and pairs, and resumes an interrupted one from a checkpoint.
Precision as in SFT (``lw.sft.precision``): fp32 weights with bf16 autocast where ``bf16: true``.
"""

from pathlib import Path

from lw import scoring
from lw.errors import LwError


def sample(model, rows: list[dict], folder, n_samples: int = 4, max_new_tokens: int = 2048,
           temperature: float = 0.8, repetition_penalty: float = 1.0, seed: int = 0,
           progress: bool = True) -> list[list[dict]]:
    """``n_samples`` sampled answers per row (``{"id", "prompt", "length"}``), generated together
    and stored as they finish. Returns, per row, its samples (``predict`` records with ids
    ``<row id>#s<k>``)."""
    from lw.evaluate import predict
    from lw.store import keyed_path

    if n_samples < 2:
        raise LwError(f"a preference pair needs at least 2 samples per instruction, got {n_samples}.")
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature,
                    repetition_penalty=repetition_penalty)
    path = keyed_path(folder, "dpo-samples", model=model.spec, n_samples=n_samples, seed=seed,
                      **settings)
    # Where copies of a prompt in one call draw different samples (the local engine), all
    # copies go in one batch; elsewhere copies sharing a seed come back alike (a server, vLLM
    # in process), so each sample index gets its own seed (its requests still run together).
    together = model.capabilities.distinct_copies
    groups = [list(range(n_samples))] if together else [[k] for k in range(n_samples)]
    preds = {}
    for group in groups:
        copies = [{**r, "id": f"{r['id']}#s{k}", "source_id": r["id"]} for k in group for r in rows]
        preds.update({p["id"]: p for p in predict(model, copies, path, progress=progress,
                                                   seed=seed + group[0], **settings)})
    return [[preds[f"{r['id']}#s{k}"] for k in range(n_samples)] for r in rows]


def score(samples: list[list[dict]], judge_model, folder, mode: str = "auto",
          progress: bool = True) -> list[list[dict]]:
    """Each sample with ``S_l`` (its length score), ``S_q`` (the judge's quality, 0-100) and
    ``reward`` = their mean (the length score alone where the judge gave no score)."""
    from lw.judge import judge
    from lw.store import keyed_path

    flat = [p for group in samples for p in group]
    path = keyed_path(folder, "dpo-judge", judge=judge_model.spec, mode=mode)
    marks = {j["id"]: j for j in judge(judge_model, flat, path, mode=mode, progress=progress)}
    scored = []
    for group in samples:
        rows = []
        for p in group:
            s_l = scoring.length_score(p["length"], p.get("words", 0)) if p.get(
                "status") == "done" else 0.0
            ratings = (marks.get(p["id"]) or {}).get("scores")
            s_q = (sum(scoring.dimension_score(ratings[d]) for d in scoring.DIMENSIONS)
                   / len(scoring.DIMENSIONS)) if ratings else None
            rows.append({**p, "S_l": s_l, "S_q": s_q,
                         "reward": s_l if s_q is None else (s_l + s_q) / 2})
        scored.append(rows)
    return scored


def make_pairs(scored: list[list[dict]], min_margin: float = 5.0) -> list[dict]:
    """One pair per instruction: the highest-reward sample as chosen, the lowest as rejected,
    in TRL's conversational format (``prompt``, ``chosen``, ``rejected`` message lists).
    Instructions whose best and worst differ by less than ``min_margin`` give no pair."""
    pairs = []
    for group in scored:
        ok = [p for p in group if p.get("status") == "done" and p.get("response", "").strip()]
        if len(ok) < 2:
            continue
        ranked = sorted(ok, key=lambda p: p["reward"], reverse=True)
        best, worst = ranked[0], ranked[-1]
        if best["reward"] - worst["reward"] < min_margin:
            continue
        pairs.append({"prompt": [{"role": "user", "content": best["prompt"]}],
                      "chosen": [{"role": "assistant", "content": best["response"]}],
                      "rejected": [{"role": "assistant", "content": worst["response"]}],
                      "id": best.get("source_id", best["id"]),
                      "chosen_reward": round(best["reward"], 2),
                      "rejected_reward": round(worst["reward"], 2),
                      "chosen_words": best["words"], "rejected_words": worst["words"]})
    return pairs


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

