"""The end-to-end report: a run's key numbers set beside the paper's, as Markdown with figures.

    python -m lw.report runs/small          # writes runs/small/REPORT.md
    lw.report.write("runs/small")           # the same from Python (the runner calls it)

It reads ``summary.json`` (the records every notebook writes) and links the figures the notebooks
saved under ``figures/``; a notebook that has not run yet is listed as missing, not guessed.
"""

import json
import os
import platform
import sys
import time
from pathlib import Path

from lw.paper import tables

PAPER = {
    "ruler": "Long-context models asked for 1k-30k words stop near 2,000 words (Fig. 1).",
    "controlled": "GLM-4-9B tuned on SFT data capped at 500 / 1,000 / 2,000 output words writes "
                  "about 600 / 900 / 1,800 words (Fig. 3; numbers unverified).",
    "agentwrite": "AgentWrite takes GPT-4o past 20,000 words where direct generation stops near "
                  "2,000.",
    "sft": "LongWriter-9B: S 80.5, S_l 78.6, S_q 82.3 against GLM-4-9B-chat's S 68.3 / S_l 51.0 "
           "(unverified); DPO adds S 84.0.",
}


def _fmt(v, nd=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _fig(run: Path, name: str) -> str:
    path = run / "figures" / name
    return f"\n![{name}](figures/{name})\n" if path.exists() else f"\n(figure {name} missing)\n"


def _ci(name: str, c: dict) -> str:
    """One interval as a table row: estimate [low, high], prompts, and what it says."""
    from lw.stats import verdict

    words = ("higher", "lower") if name.endswith("S_l") else ("longer", "shorter")
    return (f"| {name} | {c['estimate']:.2f} | [{c['low']:.2f}, {c['high']:.2f}] | "
            f"{c['n_prompts']} | {verdict(c, *words)} |")


def _intervals(r: dict) -> list[str]:
    """The record's 95% intervals (paired bootstrap over prompts), if it has any."""
    if not r.get("intervals"):
        return []
    return ["", "95% intervals (paired bootstrap over prompts; ratios of means, S_l as a "
            "difference):", "", "| comparison | estimate | 95% interval | prompts | verdict |",
            "|---|---|---|---|---|"] + [_ci(k, c) for k, c in r["intervals"].items()]


def _words(words, usable=None) -> str:
    """Mean words, with the usable words beside them where the record has them."""
    return _fmt(words, 0) if usable is None else f"{_fmt(words, 0)} (usable {_fmt(usable, 0)})"


def _stale(name: str, key: str) -> list[str]:
    """A record written before the field it needs had that name: said, not guessed."""
    return [f"The record of {name} was written by an older kit (it has no `{key}`): rerun it "
            f"(`python -m lw.run --only {name[:2]} --force`).", ""]


def _missing(name: str) -> list[str]:
    return [f"*Notebook {name} has not finished in this run folder.*", ""]


def _cpu() -> str:
    """The CPU's model name and whether it has bf16 instructions (``small`` runs local models in
    bf16 where it has, in fp32 where not: the figures differ)."""
    from lw.llm import cpu_bf16

    try:
        text = Path("/proc/cpuinfo").read_text()
        name = next((x.partition(":")[2].strip() for x in text.splitlines()
                     if x.startswith("model name")), "CPU model unknown")
    except OSError:
        name = platform.processor() or "CPU model unknown"
    why = cpu_bf16()
    return f"{name} ({'bf16 instructions' if why is None else 'no bf16 instructions'})"


def build(run) -> str:
    """The report's Markdown for a run folder."""
    run = Path(run)
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() \
        else {"records": {}, "seconds": {}}
    rec, secs = summary.get("records", {}), summary.get("seconds", {})
    size = next((r.get("size") for r in rec.values() if r.get("size")), run.name)
    out = [f"# LongWriter reproduction report ({size})", "",
           f"Run folder `{run}`; written {time.strftime('%Y-%m-%d %H:%M')} on "
           f"{platform.system()} {platform.machine()}, {_cpu()}, {os.cpu_count()} cores, Python "
           f"{platform.python_version()}. Paper: Bai et al., arXiv 2408.07055.", "",
           "## Wall time per notebook", "", "| notebook | seconds |", "|---|---|"]
    out += [f"| {k} | {_fmt(v)} |" for k, v in sorted(secs.items())]
    out += [f"| **total** | {_fmt(sum(v for v in secs.values() if isinstance(v, int | float)))} |",
            ""]
    out += _ruler(rec.get("01_longwrite_ruler"), run)
    out += _controlled(rec.get("06_controlled_experiment"), run)
    out += _agentwrite(rec.get("02_agentwrite"), run)
    out += _finetune(rec.get("04_longwriter_data"), rec.get("05_finetune"), run)
    out += _lbw(rec.get("03_longbench_write"), run)
    out += ["## Reading these numbers", "",
            "At `small` size the model is SmolLM2-135M on 2 CPU cores, a few dozen training "
            "conversations and a handful of prompts: the report shows whether each effect's "
            "direction holds, not the paper's magnitudes. Quality scores come from a 135M "
            "self-judge unless a judge was set. Every number above comes from this run's records "
            "(`summary.json`).", ""]
    return "\n".join(out)


def _ruler(r, run) -> list[str]:
    out = ["## Claim 1: where models stop (LongWrite-Ruler)", "", f"Paper: {PAPER['ruler']}", ""]
    if not r:
        return out + _missing("01_longwrite_ruler")
    if "mean_words_by_length" not in r:
        return out + _stale("01_longwrite_ruler", "mean_words_by_length")
    usable = r.get("mean_usable_words_by_length") or {}  # records before 2026-11-26 lack it
    note = " (usable: before the text degenerates)" if usable else ""
    out += [f"| model | required -> mean words{note} | max words | truncated |",
            "|---|---|---|---|"]
    for m, means in r["mean_words_by_length"].items():
        curve = ", ".join(f"{k}: {_words(v, usable.get(m, {}).get(k))}" for k, v in means.items())
        out.append(f"| {m} | {curve} | {_fmt(r['max_output_words'][m])} | "
                   f"{r['truncated'][m]} of {r['prompts']}{_capped(r.get('capped', {}).get(m))} |")
    return out + [_fig(run, "01_ruler_curve.png"), ""]


def _controlled(r, run) -> list[str]:
    from lw.stats import verdict

    out = ["## Claim 2: output length follows the SFT data's cap (controlled experiment)", "",
           f"Paper: {PAPER['controlled']}", ""]
    if not r:
        return out + _missing("06_controlled_experiment")
    seeds = r.get("seeds", [0])
    out += [f"Design {r.get('design', 'filter')!r}: {r['per_cap'][0]['conversations']} "
            f"conversations per cap, {len(seeds)} training seed(s), {r['prompts']} prompts.", "",
            "| cap (words) | mean answer in data | longest in data | mean output | mean usable "
            "output | max output | ended by themselves |", "|---|---|---|---|---|---|---|"]
    for c in r["per_cap"]:
        stopped = "n/a" if c.get("stopped") is None else f"{c['stopped']:.0%}"
        out.append(f"| {c['cap']} | {_fmt(c.get('data_mean_words'))} | {c['data_max_words']} | "
                   f"{_fmt(c['mean_words'])} | {_fmt(c.get('mean_usable_words'))} | "
                   f"{_fmt(c['max_words'])} | {stopped} |")
    if r.get("intervals"):
        out += ["", "Spearman's rank correlation of the cap with each answer's length, with a 95% "
                "bootstrap interval over prompts and training seeds:", "",
                "| answer length | estimate | 95% interval | prompts x seeds | verdict |",
                "|---|---|---|---|---|"]
        for name, c in r["intervals"].items():
            out.append(f"| {name.removeprefix('spearman_cap_').replace('_', ' ')} | "
                       f"{c['estimate']:.2f} | [{c['low']:.2f}, {c['high']:.2f}] | "
                       f"{c['n_prompts']} x {c['n_seeds']} | "
                       f"{verdict(c, up='rises', down='falls', same='no clear trend')} |")
    else:  # records from before 2026-11-26 hold a point estimate only
        trend = "rises with the cap" if r.get("rises") else "does **not** rise clearly with the cap"
        out += ["", f"Spearman(cap, max output) = {_fmt(r.get('spearman_max'), 2)}, no interval: "
                f"the maximum output length {trend}."]
    return out + [_fig(run, "06_cap_curve.png"), ""]


def _agentwrite(r, run) -> list[str]:
    out = ["## Claim 3: AgentWrite writes far longer than direct generation", "",
           f"Paper: {PAPER['agentwrite']}", ""]
    if not r:
        return out + _missing("02_agentwrite")
    if "mean_length" not in r:
        return out + _stale("02_agentwrite", "mean_length")
    out += [f"{r['instructions']} instructions asking for {_fmt(r['mean_length'], 0)} words on "
            f"average, model `{r['model']}`:", "",
            "| method | mean words | usable words | vs direct | loop-free vs direct | repetition |",
            "|---|---|---|---|---|---|"]
    usable = r.get("mean_usable_words") or {}  # records before 2026-11-26 lack it: "n/a"
    for m, w in r["mean_words"].items():
        vs = {"sequential": r.get("sequential_vs_direct"), "parallel": r.get("parallel_vs_direct")}
        out.append(f"| {m} | {_fmt(w, 0)} | {_fmt(usable.get(m), 0)} | "
                   f"{_fmt(vs.get(m), 2) if m in vs else '1.00'} | "
                   f"{_fmt(r['loop_free_vs_direct'].get(m), 2)} | "
                   f"{_fmt(r['mean_repetition'].get(m), 3)} |")
    return out + _intervals(r) + [_fig(run, "02_agentwrite_words.png"), ""]


def _finetune(data, ft, run) -> list[str]:
    out = ["## Claims 4-5: long-output data and fine-tuning (SFT, DPO)", "",
           f"Paper: {PAPER['sft']}", ""]
    if data:
        out += [f"Data (notebook 04): {data['kept']} of {data['instructions']} AgentWrite answers "
                f"kept (rejected: {data['rejected'] or 'none'}), mean {_fmt(data['mean_words'])} "
                f"words, longest {data['max_words']}; {data['general_kept']} short general "
                "answers for mixing.", _fig(run, "04_data_lengths.png")]
    else:
        out += _missing("04_longwriter_data")
    if not ft:
        return out + _missing("05_finetune")
    out += [f"LongBench-Write prompts asking for 2,000+ words ({ft['prompts']}), budget "
            f"{ft['budget_tokens']} tokens:", "",
            "| model | mean words | usable words | S_l | S_q | S | truncated |",
            "|---|---|---|---|---|---|---|"]
    for m, x in ft["results"].items():  # records before 2026-11-26 lack usable words: "n/a"
        out.append(f"| {m} | {_fmt(x['mean_words'], 0)} | {_fmt(x.get('mean_usable_words'), 0)} | "
                   f"{_fmt(x['S_l'])} | {_fmt(x['S_q'])} | {_fmt(x['S'])} | {x['truncated']}"
                   f"{_capped(x.get('capped'))} |")
    out += [f"| paper: {p['model']} | | | {p['S_l']} | {p['S_q']} | {p['S']} | |"
            for p in tables.paper_rows() if "LongWriter-9B" in p["model"]]
    out += ["", f"Fine-tuned vs base mean words: {_fmt(ft['sft_vs_base_words'], 2)}x."]
    out += _intervals(ft)
    return out + [_fig(run, "05_sft_loss.png"), _fig(run, "05_base_vs_sft.png"), ""]


def _lbw(r, run) -> list[str]:
    out = ["## LongBench-Write on the base model", ""]
    if not r:
        return out + _missing("03_longbench_write")
    out += [f"{r['prompts']} prompts of `{r['benchmark']}`, budget {r['budget_tokens']} tokens.",
            "", "| model | S | S_l | S_q | mean words | usable words | truncated |",
            "|---|---|---|---|---|---|---|"]
    for m, x in r["results"].items():
        out.append(f"| {m} | {_fmt(x['S'])} | {_fmt(x['S_l'])} | {_fmt(x['S_q'])} | "
                   f"{_fmt(x['mean_words'], 0)} | {_fmt(x.get('mean_usable_words'), 0)} | "
                   f"{x['truncated']}{_capped(x.get('capped'))} |")
    return out + [_fig(run, "03_lbw_buckets.png"), ""]


def _capped(n) -> str:
    """A note of how many replies had their budget lowered by the context, or nothing."""
    return f" ({n} capped by the context)" if n else ""


def write(run) -> Path:
    """Write ``<run>/REPORT.md`` and return its path."""
    path = Path(run) / "REPORT.md"
    path.write_text(build(run), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else "runs/small"))
