"""Preference pairs for long writing, the data DPO trains on (paper section 4.2).

The paper samples 4 answers per long-writing instruction, scores each by a quality reward
combined with the length score, and takes the best as chosen and another as rejected. Here:

    samples = sample(model, rows, folder, n_samples=4, max_new_tokens=2048)
    scored = score(samples, judge_model, folder)     # S_l, S_q and reward = (S_l + S_q) / 2
    pairs = make_pairs(scored)                       # best vs worst, when they differ enough
    lw.sft.dpo.train_dpo(recipe, pairs, ...)         # training, in lw.sft

Sampling and judging are resumable: the samples' file is named by model and settings, the
judge's by judge, mode and the answers it judges.
"""

from lw import scoring
from lw.errors import LwError
from lw.records import Answer, Prompt, answer_length_score


def sample(model, rows: list[Prompt], folder, n_samples: int = 4, max_new_tokens: int = 2048,
           temperature: float = 0.8, repetition_penalty: float = 1.0, seed: int = 0,
           progress: bool = True) -> list[list[Answer]]:
    """``n_samples`` sampled answers per row (``{"id", "prompt", "length"}``), generated together
    and stored as they finish. Returns, per row, its samples (``predict`` records with ids
    ``<row id>#s<k>``)."""
    from lw.generation import predict
    from lw.store import keyed_path

    if n_samples < 2:
        raise LwError(f"a preference pair needs at least 2 samples per instruction, got {n_samples}.")
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature,
                    repetition_penalty=repetition_penalty)
    path = keyed_path(folder, "dpo-samples", model=model, n_samples=n_samples, seed=seed,
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


def score(samples: list[list[Answer]], judge_model, folder, mode: str = "auto",
          progress: bool = True) -> list[list[Answer]]:
    """Each sample with ``S_l`` (its length score), ``S_q`` (the judge's quality, 0-100) and
    ``reward`` = their mean (the length score alone where the judge gave no score)."""
    from lw.judge import judge
    from lw.store import answers_digest, keyed_path

    flat = [p for group in samples for p in group]
    # The file is named by the answers it judges too: new samples in the same folder never
    # meet the scores of old ones.
    path = keyed_path(folder, "dpo-judge", judge=judge_model, mode=mode,
                      answers=answers_digest(flat))
    marks = {j["id"]: j for j in judge(judge_model, flat, path, mode=mode, progress=progress)}
    scored = []
    for group in samples:
        rows = []
        for p in group:
            s_l = answer_length_score(p) if p.get("status") == "done" else 0.0
            ratings = (marks.get(p["id"]) or {}).get("scores")
            s_q = (sum(scoring.dimension_score(ratings[d]) for d in scoring.DIMENSIONS)
                   / len(scoring.DIMENSIONS)) if ratings else None
            rows.append({**p, "S_l": s_l, "S_q": s_q,
                         "reward": s_l if s_q is None else (s_l + s_q) / 2})
        scored.append(rows)
    return scored


def make_pairs(scored: list[list[Answer]], min_margin: float = 5.0) -> list[dict]:
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
