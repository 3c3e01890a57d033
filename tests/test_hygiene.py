"""Repository hygiene: clean notebooks that follow the skeleton, and agreeing dependency lists."""

import ast
import io
import json
import tokenize
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        checked = "# NBVAL_CHECK_OUTPUT" in "".join(cell["source"])
        assert checked or not cell.get("outputs"), f"{path.name}: run `make strip` to clear outputs"
        assert checked or cell.get("execution_count") is None, f"{path.name}: `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_skeleton(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged `parameters`"
    tree = ast.parse("".join(params[0]["source"]))
    names = []
    for stmt in tree.body:  # literals only, UPPER_CASE, so papermill can override each one
        assert isinstance(stmt, ast.Assign), ast.dump(stmt)
        name = stmt.targets[0].id
        assert name.isupper(), name
        ast.literal_eval(stmt.value)
        names.append(name)
    assert "SIZE" in names
    text = "".join(params[0]["source"])
    comments = {}  # statement line -> comments on its lines (papermill reads them as help)
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            comments.setdefault(tok.start[0], []).append(tok.string)
    for stmt in tree.body:
        found = [c for n in range(stmt.lineno, stmt.end_lineno + 1) for c in comments.get(n, [])]
        assert found, f"{stmt.targets[0].id}: give it a comment with its type and meaning"
        # papermill's parameter parser breaks on '=' inside a comment
        assert all("=" not in c for c in found), f"no '=' in the comment of {stmt.targets[0].id}"
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert "lw.run.record(" in sources[-1], "the last code cell records the key numbers"
    assert all("def " not in s and "class " not in s for s in sources), "logic belongs in lw/"


def _requirements_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["notebooks"]
    reqs += project["optional-dependencies"]["dev"]
    return {str(Requirement(r)) for r in reqs}


def _requirements_conda():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {str(Requirement(r)) for r in pip}


def test_environment_yml_matches_pyproject():
    assert _requirements_conda() == _requirements_pyproject()


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make reproduce" in readme
