"""The notebook runner: order, parameters, records, resume, and a clear stop on failure."""

import json

import nbformat
import pytest

from lw import run
from lw.errors import LwError


def write_nb(path, *sources, params="SIZE = None  # str | None: run size"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def kit(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    write_nb(nbs / "00_first.ipynb",
             "import lw, os\nlw.run.record('00_first', {'size': SIZE, 'x': 1})")
    write_nb(nbs / "01_second.ipynb",
             "import lw\nlw.run.record('01_second', {'size': SIZE, 'y': X})",
             params="SIZE = None  # str | None: run size\nX = 0  # int: a value")
    write_nb(nbs / "notes.ipynb", "raise SystemExit('unnumbered notebooks are not run')")
    return tmp_path


def test_runs_in_order_records_and_resumes(kit, monkeypatch, capsys):
    monkeypatch.delenv("LW_RUN_DIR", raising=False)
    out = kit / "runs"
    summary = run.run("mock", out=out, folder=kit / "notebooks", parameters={"X": 5})
    assert list(summary["records"]) == ["00_first", "01_second"]
    assert summary["records"]["01_second"] == {"size": "mock", "y": 5}
    assert (out / "00_first.ipynb").exists() and (out / "summary.json").exists()
    assert json.loads((out / "summary.json").read_text())["records"]["00_first"]["x"] == 1
    again = run.run("mock", out=out, folder=kit / "notebooks", parameters={"X": 5})
    assert "skipped" in capsys.readouterr().out
    assert again["seconds"] == summary["seconds"]  # nothing was redone
    (out / "summary.json").unlink()
    changed = run.run("mock", out=out, folder=kit / "notebooks", parameters={"X": 6},
                      only=["01"])
    assert changed["records"]["01_second"]["y"] == 6
    # A partial rerun still reports the time of the notebook it did not redo.
    assert changed["seconds"]["00_first"] == summary["seconds"]["00_first"]
    assert (out / "REPORT.md").exists()
    # An edited notebook is run again even with the same parameters.
    write_nb(kit / "notebooks" / "00_first.ipynb",
             "import lw\nlw.run.record('00_first', {'size': SIZE, 'x': 2})")
    edited = run.run("mock", out=out, folder=kit / "notebooks", parameters={"X": 6})
    assert edited["records"]["00_first"]["x"] == 2


def test_first_failure_stops_the_run_with_the_cell_and_the_copy(kit, monkeypatch):
    monkeypatch.delenv("LW_RUN_DIR", raising=False)
    write_nb(kit / "notebooks" / "00_first.ipynb", "x = 1", "raise ValueError('bad input here')")
    out = kit / "runs"
    with pytest.raises(LwError, match=r"00_first.ipynb failed in cell \d+ \(`raise ValueError.*ValueError: bad input"):
        run.run("mock", out=out, folder=kit / "notebooks")
    assert (out / "00_first.ipynb").exists()  # the executed copy holds the traceback
    assert not (out / "01_second.ipynb").exists()  # later notebooks did not run


def test_cli_reports_failure_with_exit_code(kit, monkeypatch, capsys):
    monkeypatch.delenv("LW_RUN_DIR", raising=False)
    write_nb(kit / "notebooks" / "00_first.ipynb", "1/0")
    monkeypatch.setattr(run.paths, "home", lambda: kit)
    assert run.main(["--size", "mock", "--only", "00"]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_unknown_notebook_selection(kit):
    with pytest.raises(LwError, match="no notebooks match"):
        run.run("mock", only=["99"], folder=kit / "notebooks", out=kit / "runs")


def test_make_strip_leaves_notebooks_nbval_can_check(tmp_path):
    """nbstripout clears the check cells' execution counts (their outputs stay); nbval then
    refuses them. The strip target restores the counts, and only for those cells."""
    import shutil
    import subprocess
    import sys

    src = sorted(p for p in (run.paths.home() / "notebooks").glob("0*.ipynb"))[0]
    nb = tmp_path / src.name
    shutil.copy(src, nb)
    before = json.loads(nb.read_text())
    subprocess.run([sys.executable, "-m", "nbstripout", "--keep-id", str(nb)], check=True)
    assert run.restore_checked_counts([nb]) == [nb]
    assert json.loads(nb.read_text()) == before
