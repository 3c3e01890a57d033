"""Tables that set AgentWrite beside direct generation (for the notebook and reports).

    table = long_table({"direct": direct_recs, "sequential": seq_recs, "parallel": par_recs})
    summary(table)   # per method: mean words, mean required, ratio to direct, failures
"""


from lw import records
from lw import text as lw_text
from lw.records import Answer


def long_table(records_by_method: dict[str, list[Answer]]):
    """One row per (item, method): id, method, length, words, usable_words (words
    before the text degenerates into loops or salad, ``lw.text.usable_words``), ratio,
    repetition (share of repeated 4-grams: a loop shows as a high value), loop_free_words,
    status, seconds."""
    import pandas as pd

    rows = []
    for method, answers in records_by_method.items():
        for r in map(records.answer, answers):
            rows.append({"id": r["id"], "prompt": r["prompt"][:60], "method": method,
                         "length": r["length"], "words": r["words"],
                         "usable_words": lw_text.usable_words(r.get("response", "")),
                         "ratio": round(r["words"] / r["length"], 2),
                         "repetition": r.get("repetition", lw_text.repetition(r.get("response", ""))),
                         "loop_free_words": lw_text.count_words(lw_text.loop_free(r.get("response", ""))),
                         "status": r["status"], "plan_mode": r.get("plan_mode", ""),
                         "completion_tokens": r.get("completion_tokens", 0),
                         "seconds": round(r.get("seconds") or 0.0, 1)})
    return pd.DataFrame(rows)


def summary(table, baseline: str = "direct"):
    """Per method: items, failed, mean required and written words, mean repetition, mean
    loop-free words (``lw.text.loop_free``) and usable words (``lw.text.usable_words``), and
    the word means relative to ``baseline``'s (the "AgentWrite / direct" factor; the paper's
    measure first). For an interval on that factor see ``lw.stats.paired``."""
    done = table[table["status"] == "done"]
    out = table.groupby("method", sort=False).agg(items=("id", "count"))
    out["failed"] = table[table["status"] != "done"].groupby("method").size()
    out["mean_length"] = done.groupby("method")["length"].mean().round(0)
    out["mean_words"] = done.groupby("method")["words"].mean().round(0)
    out["mean_repetition"] = done.groupby("method")["repetition"].mean().round(3)
    out["mean_loop_free_words"] = done.groupby("method")["loop_free_words"].mean().round(0)
    out["mean_usable_words"] = done.groupby("method")["usable_words"].mean().round(0)
    if baseline in out.index:
        out[f"vs_{baseline}"] = (out["mean_words"] / out.loc[baseline, "mean_words"]).round(2)
        out[f"loop_free_vs_{baseline}"] = (out["mean_loop_free_words"] /
                                           out.loc[baseline, "mean_loop_free_words"]).round(2)
        out[f"usable_vs_{baseline}"] = (out["mean_usable_words"] /
                                        out.loc[baseline, "mean_usable_words"]).round(2)
    return out.fillna({"failed": 0}).astype({"failed": int})
