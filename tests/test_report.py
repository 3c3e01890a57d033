"""The report's tables from hand-made records: usable words beside raw words in claim 1, and
DPO's intervals beside SFT's in claims 4-5 (the mock run in test_report_mock_run has no 05)."""

from lw import report, stats


def _ruler(**extra) -> dict:
    return {"prompts": 2, "max_output_words": {"m": 930}, "truncated": {"m": 0},
            "mean_words_by_length": {"m": {"1000": 920.0, "2000": 610.4}}, **extra}


def _claim(text: str, start: str) -> str:
    return next(s for s in text.split("\n## ") if s.startswith(start))


def _build(tmp_path, records: dict) -> str:
    import json

    (tmp_path / "summary.json").write_text(json.dumps({"records": records, "seconds": {}}))
    return report.build(tmp_path)


def test_claim_1_shows_usable_words_where_recorded(tmp_path):
    usable = {"m": {"1000": 610.0, "2000": 600.2}}
    text = _claim(_build(tmp_path, {"01_longwrite_ruler": _ruler(
        mean_usable_words_by_length=usable)}), "Claim 1")
    assert "| m | 1000: 920 (usable 610), 2000: 610 (usable 600) | 930 |" in text
    older = _claim(_build(tmp_path, {"01_longwrite_ruler": _ruler()}), "Claim 1")  # no KeyError
    assert "| m | 1000: 920, 2000: 610 | 930 |" in older and "(usable" not in older


def test_claims_4_5_print_dpo_intervals_and_usable_words(tmp_path):
    ci = stats.paired([900, 1200, 800], [700, 650, 720], "ratio")
    results = {n: {"mean_words": w, "mean_usable_words": u, "S": 10.0, "S_l": 20.0, "S_q": 3.0,
                   "truncated": 0} for n, w, u in (("base", 700, 650), ("SFT", 970, 512),
                                                   ("DPO", 990, 777))}
    ft = {"size": "small", "prompts": 3, "budget_tokens": 2048, "results": results,
          "sft_vs_base_words": 1.39, "intervals": {"SFT_vs_base_usable_words": ci,
                                                   "DPO_vs_base_usable_words": ci,
                                                   "DPO_vs_SFT_usable_words": ci}}
    text = _claim(_build(tmp_path, {"05_finetune": ft}), "Claims 4-5")
    assert "| DPO | 990 | 777 |" in text and "| SFT | 970 | 512 |" in text
    for k in ft["intervals"]:
        assert f"| {k} | {ci['estimate']:.2f} | [{ci['low']:.2f}, {ci['high']:.2f}] | 3 |" in text


def test_claim_2_prints_the_spearman_interval_and_verdict_or_says_there_is_none(tmp_path):
    y = [[[40, 60], [150, 120], [700, 500]], [[70, 50], [200, 260], [400, 900]],
         [[30, 35], [90, 100], [300, 280]]]  # [prompts, caps, seeds]
    rho = stats.spearman([50, 150, 450], y, seeds="crossed")
    per_cap = [{"cap": c, "conversations": 12, "data_mean_words": c * 0.7, "data_max_words": c,
                "mean_words": m, "mean_usable_words": m - 5, "max_words": int(m * 2),
                "stopped": 0.5} for c, m in ((50, 50.0), (150, 160.0), (450, 510.0))]
    record = {"design": "cut", "caps": [50, 150, 450], "seeds": [0, 1], "prompts": 3,
              "per_cap": per_cap, "intervals": {"spearman_cap_usable_words": rho}}
    text = _claim(_build(tmp_path, {"06_controlled_experiment": record}), "Claim 2")
    assert "Design 'cut': 12 conversations per cap, 2 training seed(s), 3 prompts." in text
    assert "| 450 | 315.0 | 450 | 510.0 | 505.0 | 1,020 | 50% |" in text
    row = f"| usable words | {rho['estimate']:.2f} | [{rho['low']:.2f}, {rho['high']:.2f}] | 3 x 2 |"
    assert row in text
    assert text.split(row)[1].split("\n")[0].strip(" |") == stats.verdict(
        rho, up="rises", down="falls", same="no clear trend")
    old = {"caps": [100, 300], "prompts": 4, "rises": False, "spearman_max": 0.5,
           "per_cap": [{"cap": 100, "conversations": 23, "data_max_words": 98, "mean_words": 270.0,
                        "max_words": 386, "stopped": 1.0}]}
    text = _claim(_build(tmp_path, {"06_controlled_experiment": old}), "Claim 2")
    assert "no interval" in text and "does **not** rise clearly" in text


def test_claim_3_and_longbench_show_usable_words_where_recorded(tmp_path):
    aw = {"instructions": 2, "mean_length": 2000.0, "model": "m",
          "mean_words": {"direct": 476.0, "sequential": 2126.0},
          "mean_usable_words": {"direct": 401.0, "sequential": 1990.0},
          "sequential_vs_direct": 4.47, "loop_free_vs_direct": {"direct": 1.0, "sequential": 4.1},
          "mean_repetition": {"direct": 0.008, "sequential": 0.002}}
    lbw = {"prompts": 8, "benchmark": "longbench_write_en", "budget_tokens": 1024,
           "results": {"m": {"S": 18.0, "S_l": 33.3, "S_q": 2.75, "mean_words": 757.0,
                             "mean_usable_words": 512.0, "truncated": 8}}}
    text = _build(tmp_path, {"02_agentwrite": aw, "03_longbench_write": lbw})
    assert "| sequential | 2,126 | 1,990 | 4.47 | 4.10 | 0.002 |" in _claim(text, "Claim 3")
    assert "| m | 18.0 | 33.3 | 2.8 | 757 | 512 | 8 |" in _claim(text, "LongBench-Write")
    older = {k: v for k, v in aw.items() if k != "mean_usable_words"}
    assert "| sequential | 2,126 | n/a | 4.47 |" in _claim(
        _build(tmp_path, {"02_agentwrite": older}), "Claim 3")


def test_a_record_from_an_older_kit_is_named_not_guessed(tmp_path):
    """Records written before the required length had one name (``length``) are reported as
    stale with the command that rewrites them, not read under their old keys."""
    import json

    from lw import report

    old = {"size": "small", "prompts": 2, "max_output_words": {"m": 10}, "truncated": {"m": 0},
           "mean_words_by_required": {"m": {"1000": 10.0}}}
    (tmp_path / "summary.json").write_text(json.dumps({"records": {"01_longwrite_ruler": old},
                                                       "seconds": {}}))
    text = report.build(tmp_path)
    assert "01_longwrite_ruler was written by an older kit (it has no `mean_words_by_length`)" \
        in text and "--only 01 --force" in text
