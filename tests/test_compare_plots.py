"""The AgentWrite comparison table and the figures (real seaborn, written to disk)."""

import matplotlib

import lw
from lw.agentwrite import long_table, summary

matplotlib.use("Agg")


def rec(i, words, status="done", target=2000, text=""):
    return {"id": f"i{i}", "prompt": f"Write thing {i}", "length": target,
            "words": words, "status": status, "plan_mode": "scaffold", "completion_tokens": 10,
            "seconds": 1.0, "response": text}


def test_summary_ratios_and_failures():
    table = long_table({"direct": [rec(1, 400), rec(2, 600)],
                        "sequential": [rec(1, 1800), rec(2, 0, status="failed")]})
    s = summary(table)
    assert s.loc["direct", "mean_words"] == 500 and s.loc["sequential", "mean_words"] == 1800
    assert s.loc["sequential", "vs_direct"] == 3.6
    assert s.loc["sequential", "failed"] == 1 and s.loc["direct", "failed"] == 0
    assert table.loc[0, "ratio"] == 0.2


def test_summary_loop_free_words_discount_loops():
    loop = "Start here. " + "Same line again.\n" * 50
    table = long_table({"direct": [rec(1, 152, text=loop)],
                        "sequential": [rec(1, 6, text="Six different words in this text.")]})
    s = summary(table)
    assert s.loc["direct", "mean_loop_free_words"] == 8  # 2 + twice "Same line again"
    assert s.loc["sequential", "loop_free_vs_direct"] == 0.75


def test_usable_words_discount_salad_the_loop_free_count_keeps():
    prose = "The harbour wakes early and the boats slip out past the lighthouse. " * 1
    salad = prose + " ".join(["answer requested"] * 40)
    table = long_table({"direct": [rec(1, 92, text=salad)],
                        "sequential": [rec(1, 12, text=prose)]})
    assert table["usable_words"].tolist() == [14, 12]  # the prose and one "answer requested"
    assert table["loop_free_words"].tolist() == [92, 12]  # no repeated sentence to cut
    s = summary(table)
    assert s.loc["direct", "mean_usable_words"] == 14
    assert s.loc["sequential", "usable_vs_direct"] == round(12 / 14, 2)


def test_figures_are_written(tmp_path):
    table = long_table({"direct": [rec(1, 400), rec(2, 600)],
                        "parallel": [rec(1, 1500), rec(2, 2100)]})
    fig = lw.plots.words_by_method(table, save=tmp_path / "w.png")
    assert (tmp_path / "w.png").stat().st_size > 10_000
    assert len(fig.axes[0].patches) >= 4  # one bar per item and method
    words = lw.plots.generation_table(["a", "b"], [lw.llm.Generation("x y", 1, 2, "stop", 0.1)] * 2,
                                      lengths=[5, 10])
    lw.plots.words_per_prompt(words, save=tmp_path / "q.png")
    assert (tmp_path / "q.png").exists()
