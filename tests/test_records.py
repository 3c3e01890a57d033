"""lw.records: one vocabulary (prompt, length, response) from benchmark row to judgement, read
through one constructor per record kind."""

import ast
from pathlib import Path

import pytest

from lw import records
from lw.errors import LwError


def test_old_names_are_read_and_only_the_new_ones_written():
    old = {"id": "a", "instruction": "Write about tides.", "target_words": 800,
           "text": "Tides rise.", "words": 2, "plan": [{"words": 800}]}
    out = records.answer(old)
    assert (out["prompt"], out["length"], out["response"]) == ("Write about tides.", 800,
                                                              "Tides rise.")
    assert out["plan"] == [{"words": 800}] and out["status"] == "done"
    assert not {"instruction", "target_words", "text"} & set(out)
    assert old["instruction"] == "Write about tides."  # the caller's dict is left as it was


def test_an_answer_has_every_field_a_reader_takes_and_the_stage_own_ones_after():
    out = records.answer({"id": "f", "prompt": "Write.", "status": "failed", "error": "boom"})
    assert list(out)[:10] == list(records.ANSWER_DEFAULTS)
    assert out["response"] == "" and out["words"] is None and out["error"] == "boom"
    assert records.answer(out) == out  # reading a record twice changes nothing


def test_the_new_name_wins_where_both_are_present():
    row = records.prompt({"id": "b", "prompt": "new", "instruction": "old", "length": 5,
                          "type": "essay", "source": "kit"})
    assert row == {"id": "b", "prompt": "new", "length": 5, "type": "essay", "source": "kit"}


def test_a_missing_field_names_it_and_the_row():
    with pytest.raises(LwError, match="needs prompt.*id 'r7'"):
        records.prompt({"id": "r7", "length": 100})
    with pytest.raises(LwError, match="must be a dict"):
        records.answer(["not", "a", "dict"])
    with pytest.raises(LwError, match="needs id"):
        records.judgement({"scores": {"Relevance": 4}})
    # required=() translates only: the caller checks with its own messages.
    assert records.prompt({"instruction": "x"}, required=()) == {"prompt": "x"}


def test_a_judgement_keeps_its_scores_and_extras():
    j = records.judgement({"id": "a", "scores": {"Relevance": 4}, "protocol": "official"})
    assert j == {"id": "a", "scores": {"Relevance": 4}, "protocol": "official"}
    assert records.judgement({"id": "b", "unscored": "no answer"})["scores"] is None


def _keys_used(tree) -> list[tuple[int, str]]:
    """String constants a module uses as record keys: row["k"], row.get("k"), {"k": ...},
    "k" in row."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            out.append(node.slice)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("get", "pop", "setdefault") and node.args
              and isinstance(node.args[0], ast.Constant)):
            out.append(node.args[0])
        elif isinstance(node, ast.Dict):
            out.extend(k for k in node.keys if isinstance(k, ast.Constant))
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
              and isinstance(node.ops[0], (ast.In, ast.NotIn))):
            out.append(node.left)
    return [(c.lineno, c.value) for c in out if isinstance(c.value, str)]


def test_old_names_are_translated_nowhere_else():
    # The constructors are the one door for the old names: no other module reads them as keys.
    # ("text" is left out: it is also a module, a judge mode and a backend's field.)
    lw_dir = Path(records.__file__).parent
    old = set(records.ALIASES) - {"text"}
    found = [f"{path.relative_to(lw_dir)}:{line} {key!r}" for path in lw_dir.rglob("*.py")
             if path.name != "records.py"
             for line, key in _keys_used(ast.parse(path.read_text())) if key in old]
    assert not found, found
    # ... and the check sees such a read where there is one.
    assert _keys_used(ast.parse('row.get("instruction") or row["target_words"]')) == [
        (1, "instruction"), (1, "target_words")]
