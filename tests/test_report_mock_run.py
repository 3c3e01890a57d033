"""The report built from a real run: notebooks 01-03 executed at mock size by the runner, their
records collected, REPORT.md written from them (no hand-made summary)."""

import json

import pytest

from lw import report, run


@pytest.mark.slow
def test_report_from_a_real_mock_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LW_CACHE_DIR", str(run.paths.cache_dir()))  # reuse converted models
    out = tmp_path / "mock"
    # The runner sets these for its kernels; monkeypatch puts the caller's back afterwards (the
    # notebooks nbval runs later in the same session read them).
    monkeypatch.setenv("LW_RUN_DIR", str(out))
    monkeypatch.setenv("LW_SIZE", "mock")
    monkeypatch.setenv("LW_PROGRESS", "text")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    summary = run.run("mock", only=["01", "02", "03"], out=out)
    assert set(summary["records"]) == {"01_longwrite_ruler", "02_agentwrite", "03_longbench_write"}
    text = (out / "REPORT.md").read_text()
    assert text.splitlines()[3:] == report.build(out).splitlines()[3:]  # but the time it was written
    sections = text.split("\n## ")
    ran = [s for s in sections if s.startswith(("Claim 1", "Claim 3", "LongBench-Write"))]
    assert len(ran) == 3 and not any("has not finished" in s for s in ran)
    missing = [s for s in sections if s.startswith(("Claim 2", "Claims 4-5"))]
    assert all("has not finished" in s for s in missing)  # reported as missing, not guessed
    ruler = summary["records"]["01_longwrite_ruler"]
    for model, words in ruler["max_output_words"].items():
        assert f"| {model} |" in text and f"{words:,}" in text
    claim3 = next(s for s in ran if s.startswith("Claim 3"))
    intervals = summary["records"]["02_agentwrite"]["intervals"]
    assert "95% intervals" in claim3 and all(f"| {k} |" in claim3 for k in intervals)
    lbw = summary["records"]["03_longbench_write"]
    assert all(f"| {m} |" in text for m in lbw["results"])
    assert json.loads((out / "summary.json").read_text())["records"] == summary["records"]
    # The saved copy shows each bar finished (lw.progress), not a widget's first 0/N state.
    cells = json.loads((out / "01_longwrite_ruler.ipynb").read_text())["cells"]
    outputs = [o for c in cells for o in c.get("outputs", [])]
    streams = "".join("".join(o["text"]) for o in outputs if o["output_type"] == "stream")
    bars = [x for x in streams.replace("\r", "\n").splitlines() if "predict tiny-random" in x]
    assert bars and "100%" in bars[-1] and "| 3/3 " in bars[-1], bars
    widgets = [o for o in outputs if o["output_type"] == "display_data"
               and "%|" in "".join(o["data"].get("text/plain", ""))]
    assert not widgets, widgets  # no bar saved as a widget frozen at its first state
