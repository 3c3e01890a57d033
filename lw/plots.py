"""Figures for the notebooks (seaborn). Each function returns a matplotlib Figure and, given
``save=``, writes it (PNG, 150 dpi) under the run's figures folder or the path given.

    fig = lw.plots.words_per_prompt(table, save="00_quickstart_words.png")
"""

from pathlib import Path

from lw import paths


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
        table: a frame from ``lw.llm.generation_table`` (columns prompt, words[, required_words]).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    table = table.assign(label=[p if len(p) <= 40 else p[:38] + "…" for p in table["prompt"]])
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * len(table)))
    sns.barplot(data=table, y="label", x="words", ax=ax, color=sns.color_palette()[0],
                label="written")
    if "required_words" in table and table["required_words"].notna().any():
        ax.scatter(table["required_words"], range(len(table)), marker="|", s=400, color="black",
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
            required_words).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    table = table.assign(label=[p if len(p) <= 34 else p[:32] + "…" for p in table["prompt"]])
    labels = list(dict.fromkeys(table["label"]))
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.9 * len(labels)))
    sns.barplot(data=table, y="label", x="words", hue="method", ax=ax, order=labels)
    required = table.drop_duplicates("label").set_index("label")["required_words"]
    ax.scatter([required[lab] for lab in labels], range(len(labels)), marker="|", s=900,
               color="black", zorder=3, label="required")
    ax.set(title=title, xlabel="words (LongBench-Write measure)", ylabel="")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    _save(fig, save)
    return fig
