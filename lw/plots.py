"""Tables and figures for the notebooks (pandas, seaborn). Each figure function returns a
``save=``, writes it (PNG, 150 dpi) under the run's figures folder or the path given.

    fig = lw.plots.words_per_prompt(table, save="00_quickstart_words.png")
"""

from pathlib import Path

from lw import paths


def generation_table(prompts, generations, lengths=None):
    """A pandas table of replies: words (paper's measure), tokens, seconds, tokens/s, finish.

    Args:
        prompts: the prompts (strings or conversations) in the order generated.
        generations: the Generation list ``generate`` returned for them.
        lengths: optional required lengths in words, one per prompt.
    """
    import pandas as pd

    from lw.text import count_words

    rows = []
    for k, (p, g) in enumerate(zip(prompts, generations, strict=True)):
        text = p if isinstance(p, str) else p[-1]["content"]
        rows.append({"prompt": text[:60], "length": lengths[k] if lengths else None,
                     "words": count_words(g.text), "completion_tokens": g.completion_tokens,
                     "seconds": round(g.seconds, 2), "finish_reason": g.finish_reason})
    df = pd.DataFrame(rows)
    if lengths is None:
        df = df.drop(columns="length")
    return df


def _save(fig, save: str | Path | None) -> None:
    if save:
        path = Path(save)
        if not path.is_absolute():
            path = paths.figures_dir() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")


def words_per_prompt(table, title: str = "Words written per prompt", save=None):
    """Bars of words written per prompt, with the required length as a marker where known.

    Args:
        table: a frame from ``generation_table`` (columns prompt, words[, length]).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    table = table.assign(label=[p if len(p) <= 40 else p[:38] + "…" for p in table["prompt"]])
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * len(table)))
    sns.barplot(data=table, y="label", x="words", ax=ax, color=sns.color_palette()[0],
                label="written")
    if "length" in table and table["length"].notna().any():
        ax.scatter(table["length"], range(len(table)), marker="|", s=400, color="black",
                   label="required", zorder=3)
    ax.set(title=title, xlabel="words (LongBench-Write measure)", ylabel="")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    _save(fig, save)
    return fig


def words_by_method(table, title: str = "Words written: direct vs AgentWrite", save=None):
    """Grouped bars of words per instruction and method, with the required length marked.

    Args:
        table: ``lw.agentwrite.long_table`` output (columns prompt, method, words,
            length).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    table = table.assign(label=[p if len(p) <= 34 else p[:32] + "…" for p in table["prompt"]])
    labels = list(dict.fromkeys(table["label"]))
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.9 * len(labels)))
    sns.barplot(data=table, y="label", x="words", hue="method", ax=ax, order=labels)
    required = table.drop_duplicates("label").set_index("label")["length"]
    ax.scatter([required[lab] for lab in labels], range(len(labels)), marker="|", s=900,
               color="black", zorder=3, label="required")
    ax.set(title=title, xlabel="words (LongBench-Write measure)", ylabel="")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    _save(fig, save)
    return fig


def length_scatter(tables: dict, title: str = "Required vs produced length", save=None):
    """Required vs produced words on log-log axes, one colour per model, with y = x.

    Args:
        tables: model name -> ``lw.longbench.length_table`` frame.
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    data = pd.concat([t.assign(model=name) for name, t in tables.items()], ignore_index=True)
    data = data.assign(words=data["words"].clip(lower=10))  # log axes: an empty answer at 10
    fig, ax = plt.subplots(figsize=(6.5, 6))
    sns.scatterplot(data=data, x="length", y="words", hue="model", style="truncated", s=70,
                    alpha=0.7, ax=ax)
    lim = (50, max(25000, data[["length", "words"]].max().max() * 1.2))
    ax.plot(lim, lim, "k--", lw=1, label="y = x")
    ax.set(xscale="log", yscale="log", xlim=lim, ylim=lim, title=title,
           xlabel="required length (words)", ylabel="output length (words)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _save(fig, save)
    return fig


def bucket_scores(results: dict, title: str = "LongBench-Write scores by required length",
                  save=None):
    """Bars of S_l and S_q per length bucket, one colour per model.

    Args:
        results: model name -> ``lw.longbench.results`` dict.
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from lw.scoring import BUCKETS

    rows = [{"model": name, "bucket": label, "score": res.get(f"{kind}{label}"), "kind": kind}
            for name, res in results.items() for _, _, label in BUCKETS
            for kind in ("S_l", "S_q")]
    data = pd.DataFrame(rows).dropna(subset=["score"])
    sns.set_theme(style="whitegrid")
    kinds = [k for k in ("S_l", "S_q") if k in set(data["kind"])] or ["S_l"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=False):
        sns.barplot(data=data[data["kind"] == kind], x="bucket", y="score", hue="model", ax=ax,
                    order=[b[2] for b in BUCKETS])
        ax.set(title=f"{kind} per bucket", ylim=(0, 100), xlabel="required length",
               ylabel=kind)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, save)
    return fig


def ruler_curve(tables: dict, title: str = "LongWrite-Ruler: where models stop", save=None):
    """Mean (solid) and max (dotted) output words against required length, one line per model,
    as the paper's Figure 1.

    Args:
        tables: model name -> ``lw.ruler.ruler_table`` frame.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    palette = sns.color_palette(n_colors=max(1, len(tables)))
    for colour, (name, t) in zip(palette, tables.items(), strict=True):
        ax.plot(t["length"], t["mean_words"], "o-", color=colour, label=f"{name} (mean)")
        ax.plot(t["length"], t["max_words"], ":", color=colour, label=f"{name} (max)")
    top = max(t["length"].max() for t in tables.values())
    ax.plot([0, top], [0, top], "k--", lw=1, label="required")
    ax.set(title=title, xlabel="required length (words)", ylabel="output length (words)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    _save(fig, save)
    return fig


def dimension_scores(results: dict, title: str = "Quality per dimension (0-100)", save=None):
    """Bars of the six judge dimensions, one colour per model."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from lw.scoring import DIMENSIONS

    data = pd.DataFrame([{"model": name, "dimension": d, "score": res.get(f"q:{d}")}
                         for name, res in results.items() for d in DIMENSIONS]).dropna()
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(data=data, x="dimension", y="score", hue="model", ax=ax)
    ax.set(title=title, ylim=(0, 100), xlabel="", ylabel="score")
    fig.tight_layout()
    _save(fig, save)
    return fig


def length_histogram(words_by_set: dict, title: str = "Output length of the training data",
                     save=None):
    """Histogram of assistant-answer lengths (words), one colour per data set.

    Args:
        words_by_set: ``{"long (AgentWrite)": [words, ...], "general": [...]}``.
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    frame = pd.DataFrame([{"set": k, "words": w} for k, ws in words_by_set.items() for w in ws])
    fig, ax = plt.subplots(figsize=(8, 4))
    if len(frame):
        sns.histplot(data=frame, x="words", hue="set", bins=20, multiple="stack", ax=ax)
    ax.set(title=title, xlabel="words in the assistant's answer", ylabel="conversations")
    fig.tight_layout()
    _save(fig, save)
    return fig


def loss_curve(histories: dict, title: str = "Training loss", save=None):
    """Training loss against step for one or more runs.

    Args:
        histories: ``{"SFT": trainer log_history, ...}`` (``TrainResult.log_history``).
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    frame = pd.DataFrame([{"run": name, "step": h["step"], "loss": float(h["loss"])}
                          for name, hist in histories.items() for h in hist
                          if "loss" in h and "step" in h])
    fig, ax = plt.subplots(figsize=(8, 4))
    if len(frame):
        sns.lineplot(data=frame, x="step", y="loss", hue="run", marker="o", ax=ax)
    ax.set(title=title, xlabel="optimizer step", ylabel="loss (target tokens)")
    fig.tight_layout()
    _save(fig, save)
    return fig


def cap_curve(table, title: str = "Output length vs the longest answers in the SFT data",
              save=None):
    """Maximum and mean output words of each model against its SFT data's cap, with y = x, as
    the paper's section 2 figure.

    Args:
        table: ``lw.controlled.run``'s ``table`` (columns cap, max_words, mean_words,
            data_max_words; mean_usable_words is drawn where present).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(table["cap"], table["max_words"], "o-", label="max output")
    ax.plot(table["cap"], table["mean_words"], "s--", label="mean output")
    if "mean_usable_words" in table:
        ax.plot(table["cap"], table["mean_usable_words"], "d-.",
                label="mean usable output (before it degenerates)")
    ax.plot(table["cap"], table["data_max_words"], "^:", color="grey",
            label="longest answer in the data")
    top = max(table["cap"].max(), table["max_words"].max())
    ax.plot([0, top], [0, top], "k--", lw=1, label="y = x")
    ax.set(title=title, xlabel="SFT data cap (words)", ylabel="output length (words)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    _save(fig, save)
    return fig
