"""The controlled experiment of the paper's section 2: is a model's maximum output length set by
the longest outputs in its SFT data?

One pool of conversations with widely spread answer lengths; K subsets capped at increasing
maximum answer lengths, each with the same number of conversations so data size is not the
variable; one model per cap from the same base, recipe and seed; each then answers the same
long-output prompts. The paper (caps 500 / 1,000 / 2,000 words) finds the models' maximum output
tracking the cap.

    subsets = cap_subsets(pool, caps=[100, 200, 400, 800], seed=0)
    table = run(subsets, recipe, prompts, "runs/small/controlled", max_new_tokens=1536)
    spearman(table["cap"], table["max_words"])
"""

import random
from pathlib import Path

from lw import text
from lw.errors import LwError


def answer_words(conv: dict) -> int:
    """Words in a conversation's last assistant message (LongBench-Write's measure)."""
    return text.count_words([m for m in conv["messages"] if m["role"] == "assistant"][-1]
                            ["content"])


def cap_subsets(pool: list[dict], caps: list[int], n: int | None = None,
                seed: int = 0) -> dict[int, list[dict]]:
    """For every cap, ``n`` conversations drawn at random (seeded) from those whose answer has at
    most ``cap`` words. ``n`` defaults to what the smallest cap allows; asking for more than a
    cap has is an error that says how many there are."""
    caps = sorted(int(c) for c in caps)
    if len(caps) < 2 or caps[0] <= 0:
        raise LwError(f"give at least two positive caps, got {caps}.")
    under = {c: [x for x in pool if answer_words(x) <= c] for c in caps}
    n = n or len(under[caps[0]])
    short = {c: len(v) for c, v in under.items() if len(v) < n}
    if n < 2 or short:
        raise LwError(f"too few conversations under the caps for {n} each: {short or under}. "
                      "Lower n, raise the smallest cap, or build a bigger pool (notebook 04).")
    rng = random.Random(seed)
    return {c: rng.sample(under[c], n) for c in caps}


def spearman(x, y) -> float | None:
    """Spearman's rank correlation (ties get average ranks); None if either side is constant."""
    x, y = list(map(float, x)), list(map(float, y))
    if len(x) != len(y) or len(x) < 2:
        raise LwError("spearman needs two equal-length sequences of at least 2 values.")
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return None if vx == 0 or vy == 0 else cov / (vx * vy) ** 0.5


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def run(subsets: dict[int, list[dict]], recipe, prompts: list[dict], folder,
        max_new_tokens: int, batch_size: int = 8, progress: bool = True,
        overrides: dict | None = None, **generation):
    """Train one model per cap (``lw.sft.train``, output ``<folder>/cap-<cap>``) and let each
    answer ``prompts`` (rows with ``id``, ``prompt``, ``length``). Resumable: finished models and
    answers are reused. Returns a DataFrame, one row per cap: data size and answer lengths, the
    models' mean and max output words, and the share of answers that ended by themselves.
    ``recipe`` is a file or dict, ``overrides`` recipe values applied to every cap."""
    import pandas as pd

    import lw
    from lw.sft.config import Recipe, load_recipe

    if isinstance(recipe, Recipe):
        raise LwError("pass the recipe as a file or dict: each cap gets its own output_dir.")
    folder = Path(folder)
    rows = []
    for cap, convs in subsets.items():
        one = load_recipe(recipe, **{**(overrides or {}), "output_dir": str(folder / f"cap-{cap}")})
        trained = lw.sft.train(one, data=[{"messages": c["messages"]} for c in convs],
                               progress=progress)
        model = lw.llm.load(trained.spec, batch_size=batch_size)
        preds = lw.evaluate.predict(
            model, prompts, lw.store.keyed_path(folder, f"cap-{cap}-answers", model=trained.spec,
                                                max_new_tokens=max_new_tokens, **generation),
            max_new_tokens=max_new_tokens, progress=progress, **generation)
        done = [p for p in preds if p.get("status") == "done"]
        data_words = [answer_words(c) for c in convs]
        rows.append({
            "cap": cap, "conversations": len(convs),
            "data_mean_words": round(sum(data_words) / len(data_words), 1),
            "data_max_words": max(data_words),
            "mean_words": round(sum(p["words"] for p in done) / max(len(done), 1), 1),
            "max_words": max((p["words"] for p in done), default=0),
            "stopped": round(sum(p["finish_reason"] == "stop" for p in done) / max(len(done), 1),
                             3),
            "repetition": round(sum(p["repetition"] for p in done) / max(len(done), 1), 3),
            "failed": len(preds) - len(done), "model": trained.spec,
            "train_seconds": trained.stats.get("train_seconds")})
    return pd.DataFrame(rows)
