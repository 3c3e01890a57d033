"""lw.stats: paired bootstrap intervals, the Spearman interval and the verdicts drawn from them."""

import numpy as np
import pytest

from lw import stats
from lw.errors import LwError

KEYS = {"estimate", "low", "high", "n_prompts", "n_seeds", "n_boot", "method"}


def reference_spearman(x, y):
    """Spearman's rho computed plainly (Pearson
    correlation of average ranks), the reference for the vectorised bootstrap."""
    return _plain_spearman(list(x), list(y))


def test_identical_samples_give_an_interval_around_zero():
    a = np.random.default_rng(0).normal(800, 300, 40)
    ci = stats.paired(a, a.copy())
    assert KEYS <= set(ci) and ci["estimate"] == 0 and ci["low"] == 0 == ci["high"]
    assert stats.verdict(ci) == "no clear difference"
    noisy = stats.paired(a, a + np.random.default_rng(1).normal(0, 50, 40))
    assert noisy["low"] < 0 < noisy["high"] and stats.verdict(noisy) == "no clear difference"


def test_a_large_shift_excludes_zero_and_reads_longer_or_shorter():
    rng = np.random.default_rng(0)
    base = rng.normal(700, 250, 8)
    longer = stats.paired(base + 500 + rng.normal(0, 40, 8), base)
    assert longer["low"] > 0 and stats.verdict(longer) == "longer"
    assert 300 < longer["estimate"] < 700
    shorter = stats.paired(base - 300, base + rng.normal(0, 40, 8))
    assert shorter["high"] < 0 and stats.verdict(shorter) == "shorter"
    assert longer["n_prompts"] == 8 and longer["n_seeds"] == 1 and longer["n_boot"] == 10_000


def test_ratio_of_means():
    rng = np.random.default_rng(0)
    base = rng.uniform(300, 900, 30)
    ci = stats.paired(1.5 * base * rng.uniform(0.9, 1.1, 30), base, "ratio")
    assert ci["statistic"] == "ratio" and ci["null"] == 1.0
    assert 1.4 < ci["low"] < ci["estimate"] < ci["high"] < 1.6
    assert stats.verdict(ci) == "longer"
    same = stats.paired(base * rng.uniform(0.8, 1.2, 30), base, "ratio")
    assert same["low"] < 1 < same["high"] and stats.verdict(same) == "no clear difference"
    with pytest.raises(LwError, match="b >= 0"):
        stats.paired(base, base - 1000, "ratio")


def test_percentile_interval_covers_the_true_difference_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(200):
        base = rng.gamma(4, 150, 40)  # skewed like word counts
        method = base + 120 + rng.normal(0, 200, 40)
        ci = stats.paired(method, base, n_boot=1000, seed=rep)
        hits += ci["low"] <= 120 <= ci["high"]
    assert 0.88 <= hits / 200 <= 0.99  # 95% nominal; the percentile interval runs a bit short


def test_intervals_are_seeded_and_level_sets_the_width():
    a, b = np.random.default_rng(0).normal(0, 1, (2, 50))
    assert stats.paired(a, b, seed=3) == stats.paired(a, b, seed=3)
    wide, narrow = stats.paired(a, b, level=0.99), stats.paired(a, b, level=0.8)
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]


def test_seeds_resampled_within_prompts_or_crossed():
    """Training seeds shift every prompt together: crossing them widens the interval."""
    rng = np.random.default_rng(0)
    base = rng.normal(600, 100, 60)
    seed_effect = np.array([-150.0, 0.0, 150.0])  # one model per seed, on every prompt
    tuned = base[:, None] + 200 + seed_effect[None, :] + rng.normal(0, 30, (60, 3))
    within = stats.paired(tuned, base, seeds="within")
    crossed = stats.paired(tuned, base, seeds="crossed")
    assert within["n_seeds"] == [3, 1] and "seeds within" in within["method"]
    assert within["estimate"] == crossed["estimate"]
    assert crossed["high"] - crossed["low"] > 3 * (within["high"] - within["low"])
    both = stats.paired(tuned, base[:, None] + rng.normal(0, 5, (60, 3)))
    assert both["n_seeds"] == 3


def test_spearman_estimate_matches_the_textbook_definition_with_ties():
    rng = np.random.default_rng(0)
    caps = [100, 300, 900]
    outputs = np.round(np.array([[200, 350, 300]]) + rng.normal(0, 80, (12, 3)), -1)  # ties
    rho = stats.spearman(caps, outputs)
    expected = reference_spearman(np.tile(caps, 12), outputs.ravel())
    assert rho["estimate"] == pytest.approx(expected, abs=1e-4)
    assert rho["statistic"] == "spearman" and rho["n_prompts"] == 12
    per_prompt_caps = np.tile(caps, (12, 1)) + rng.integers(0, 5, (12, 3))
    assert stats.spearman(per_prompt_caps, outputs)["estimate"] == pytest.approx(
        reference_spearman(per_prompt_caps.ravel(), outputs.ravel()), abs=1e-4)


def test_weighted_ranks_equal_ranking_the_resample_itself():
    """A resample's Spearman computed from draw counts equals ranking the repeated points."""
    rng = np.random.default_rng(0)
    x = np.repeat([1.0, 2.0, 3.0], 5)
    y = np.round(rng.normal(0, 1, 15), 1)
    order = np.argsort(y, kind="stable")
    weights = rng.integers(0, 3, (4, 15)).astype(float)
    got = stats._weighted_rank_corr(x[order], y[order], weights[:, order])
    for b in range(4):
        reps = np.repeat(np.arange(15), weights[b].astype(int))
        assert got[b] == pytest.approx(reference_spearman(x[reps], y[reps]), abs=1e-9)


def test_spearman_interval_sees_a_rise_and_its_absence():
    rng = np.random.default_rng(0)
    caps = [100, 300, 900]
    rising = np.array([[150, 300, 700]]) + rng.normal(0, 120, (40, 3))
    ci = stats.spearman(caps, rising)
    assert ci["low"] > 0 and stats.verdict(ci, up="rises", down="falls") == "rises"
    flat = np.array([[300, 300, 300]]) + rng.normal(0, 120, (40, 3))
    ci = stats.spearman(caps, flat)
    assert ci["low"] < 0 < ci["high"] and stats.verdict(ci, up="rises") == "no clear difference"
    seeded = rising[:, :, None] + rng.normal(0, 30, (40, 3, 2))
    ci = stats.spearman(caps, seeded, seeds="crossed")
    assert ci["n_seeds"] == 2 and ci["low"] > 0


def test_ten_thousand_resamples_of_120_unrelated_prompts_hold_no_effect():
    import time

    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (2, 120))
    start = time.perf_counter()
    diff = stats.paired(a, b)
    rank = stats.spearman([1, 2, 3], rng.normal(0, 1, (120, 3)))
    print(f"paired + spearman, 10,000 resamples of 120 prompts: "
          f"{time.perf_counter() - start:.2f} s")  # a figure, not a pass/fail
    # The resampling ran in full: every prompt counted, an interval around each estimate, and
    # for unrelated draws intervals that hold no effect.
    for ci in (diff, rank):
        assert ci["n_prompts"] == 120 and ci["low"] <= ci["estimate"] <= ci["high"]
        assert ci["low"] < 0 < ci["high"]


def test_paired_values_line_up_records_by_id_across_seeds():
    def rec(i, words, text=""):
        return {"id": i, "length": 1000, "words": words, "response": text}

    base = [rec("a", 300), rec("b", 900), rec("c", 50)]
    seed0 = [rec("c", 60), rec("a", 700), rec("b", 100)]
    seed1 = [rec("b", 120), rec("c", 80), rec("a", 650)]
    a, b = stats.paired_values(seed0, base)
    assert a.tolist() == [700, 100, 60] and b.tolist() == [300, 900, 50]
    a, b = stats.paired_values([seed0, seed1], base)
    assert a.shape == (3, 2) and a[0].tolist() == [700, 650]
    looped = rec("a", 0, "Intro. " + "The sky is blue today. " * 30)
    a, _ = stats.paired_values([looped, rec("b", 0), rec("c", 0)], base, "usable_words")
    assert a.tolist() == [6, 0, 0]
    a, _ = stats.paired_values(base, base, "S_l")
    assert a[1] == pytest.approx(100 * (1 - (1000 / 900 - 1) / 2))  # the paper's S_l, too short
    with pytest.raises(LwError, match=r"run 1 has no record for prompt\(s\) \['a'\]"):
        stats.paired_values([seed0, seed1[:2] + [rec("z", 1)]], base)


def test_values_by_cap_build_the_spearman_grid():
    def preds(words):
        return [{"id": i, "length": 500, "words": w} for i, w in zip("abc", words, strict=True)]

    caps, y = stats.values_by_cap({100: preds([90, 80, 100]), 300: preds([250, 200, 310]),
                                   900: list(reversed(preds([400, 700, 300])))})
    assert caps == [100, 300, 900] and y.tolist() == [[90, 250, 400], [80, 200, 700],
                                                      [100, 310, 300]]
    assert stats.spearman(caps, y)["estimate"] == pytest.approx(
        reference_spearman(np.tile(caps, 3), y.ravel()), abs=1e-4)
    caps, y = stats.values_by_cap({1: [preds([1, 2, 3]), preds([2, 3, 4])],
                                   2: [preds([5, 6, 7]), preds([6, 7, 8])]})
    assert y.shape == (3, 2, 2) and y[0].tolist() == [[1, 2], [5, 6]]
    with pytest.raises(LwError, match="same seeds"):
        stats.values_by_cap({1: preds([1, 2, 3]), 2: [preds([5, 6, 7]), preds([6, 7, 8])]})


@pytest.mark.parametrize(("call", "match"), [
    (lambda: stats.paired([1, 2, 3], [1, 2]), "same prompts"),
    (lambda: stats.paired([1, 2, np.nan], [1, 2, 3]), "NaN"),
    (lambda: stats.paired([1, 2, 3], [1, 2, 3], "median"), "difference"),
    (lambda: stats.paired([1], [1]), "at least 2 prompts"),
    (lambda: stats.paired([1, 2], [1, 2], n_boot=10), "n_boot"),
    (lambda: stats.paired([1, 2], [1, 2], seeds="nested"), "crossed"),
    (lambda: stats.spearman([1, 2], np.ones((4, 3))), "one finite value per cap"),
    (lambda: stats.spearman([1, 2, 3], np.ones((4, 3))), "no variation"),
])
def test_bad_inputs_are_refused_with_what_to_do(call, match):
    with pytest.raises(LwError, match=match):
        call()


def test_no_verdict_from_fewer_than_five_prompts():
    # Two prompts, both 4x longer: the bootstrap "interval" is just the two ratios, so the
    # verdict refuses to read it; five prompts are read.
    few = stats.paired([2000, 2400], [500, 600], "ratio")
    assert few["low"] > 1 and stats.verdict(few) == "too few prompts (2) for an interval"
    five = stats.paired([2000, 2400, 2100, 1900, 2600], [500, 600, 550, 480, 700], "ratio")
    assert stats.verdict(five) == "longer"


def _plain_spearman(x, y) -> float | None:
    """Spearman's rank correlation (ties get average ranks); None if either side is constant."""
    x, y = list(map(float, x)), list(map(float, y))
    if len(x) != len(y) or len(x) < 2:
        raise LwError("spearman needs two equal-length sequences of at least 2 values.")
    rx, ry = _plain_ranks(x), _plain_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return None if vx == 0 or vy == 0 else cov / (vx * vy) ** 0.5


def _plain_ranks(values: list[float]) -> list[float]:
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
