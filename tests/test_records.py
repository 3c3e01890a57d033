"""lw.records: one vocabulary (prompt, length, response) from benchmark row to judgement."""

import pytest

from lw.errors import LwError
from lw.records import Answer, Judgement, Prompt


def test_old_names_are_read_and_only_the_new_ones_written():
    old = {"id": "a", "instruction": "Write about tides.", "target_words": 800,
           "text": "Tides rise.", "words": 2, "plan": [{"words": 800}]}
    rec = Answer.from_dict(old)
    assert (rec.prompt, rec.length, rec.response) == ("Write about tides.", 800, "Tides rise.")
    out = rec.to_dict()
    assert out["prompt"] == "Write about tides." and out["length"] == 800
    assert out["response"] == "Tides rise." and out["plan"] == [{"words": 800}]
    assert not {"instruction", "target_words", "text"} & set(out)
    assert rec.get("target_words") == 800 and rec.get("plan") == [{"words": 800}]


def test_the_new_name_wins_where_both_are_present_and_round_trips_are_exact():
    rec = Prompt.from_dict({"id": "b", "prompt": "new", "instruction": "old", "length": 5,
                            "type": "essay", "source": "kit"})
    assert rec.prompt == "new" and rec.extra == {"source": "kit"}
    assert Prompt.from_dict(rec.to_dict()) == rec


def test_a_missing_field_names_it_and_the_row():
    with pytest.raises(LwError, match="needs prompt.*id 'r7'"):
        Prompt.from_dict({"id": "r7", "length": 100})
    with pytest.raises(LwError, match="must be a dict"):
        Answer.from_dict(["not", "a", "dict"])


def test_a_judgement_keeps_its_scores_and_extras():
    j = Judgement.from_dict({"id": "a", "scores": {"Relevance": 4}, "protocol": "official"})
    assert j.status == "scored" and j.get("protocol") == "official"
    assert Judgement.from_dict(j.to_dict()) == j
