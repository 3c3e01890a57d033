"""The run-size switch and the kit's folders."""

import pytest

from lw import paths, profiles
from lw.errors import LwError


def test_size_defaults_to_env_then_small(monkeypatch):
    monkeypatch.delenv("LW_SIZE", raising=False)
    assert profiles.resolve_size().name == "small"
    monkeypatch.setenv("LW_SIZE", "mock")
    assert profiles.resolve_size(None).model == "tiny-random"
    assert profiles.resolve_size("full").name == "full"  # an explicit SIZE beats the env


def test_size_overrides_skip_none():
    size = profiles.resolve_size("small", model=None, batch_size=2)
    assert size.model == "smollm2-135m" and size.batch_size == 2


def test_size_refuses_what_moved_to_the_profiles():
    # Budgets and counts are per notebook now (lw.profiles): an override a Size cannot hold
    # is refused with what to do, not ignored.
    with pytest.raises(LwError, match="lw.profiles"):
        profiles.resolve_size("small", max_new_tokens=99)
    assert not hasattr(profiles.resolve_size("small"), "n_items")


def test_unknown_size_says_what_is_allowed():
    with pytest.raises(LwError, match="mock, small, full"):
        profiles.resolve_size("huge")


def test_run_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LW_RUN_DIR", str(tmp_path / "run"))
    assert paths.run_dir() == tmp_path / "run" and (tmp_path / "run").is_dir()
    assert paths.figures_dir() == tmp_path / "run" / "figures"
    monkeypatch.delenv("LW_RUN_DIR")
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    assert paths.run_dir("mock") == tmp_path / "home" / "runs" / "mock"


def test_a_saved_run_shows_each_progress_bar_finished(monkeypatch):
    """Under the runner (LW_PROGRESS=text) a bar is plain text whose last state is written when
    it closes, so the executed notebook shows 8/8, not a widget's first 0/8."""
    import io

    from lw import progress

    out = io.StringIO()
    monkeypatch.setenv(progress.VAR, "text")
    with progress.bar(total=8, desc="predict tiny-random", file=out) as b:
        for _ in range(8):
            b.update(1)
    last = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("predict tiny-random: 100%") and "8/8" in last
    assert len(out.getvalue().split("\r")) <= 4  # refreshed at most a minute apart, not per step
    monkeypatch.delenv(progress.VAR)
    from tqdm.std import tqdm as plain

    with progress.bar(total=1, file=io.StringIO(), disable=True) as b:
        assert isinstance(b, plain)  # tqdm.auto's choice: a subclass of the plain bar

