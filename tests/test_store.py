"""The resumable JSONL store: flush as you go, resume, torn last line, no duplicates."""

import json
import subprocess
import sys

import pytest

from lw.errors import LwError
from lw.store import ResultStore


def test_add_is_on_disk_at_once_and_resumes(tmp_path):
    path = tmp_path / "sub" / "preds.jsonl"
    store = ResultStore(path)
    store.add({"id": "a", "x": 1})
    store.add({"id": 2, "x": "二"})
    # Another reader sees both records without any close() or flush by the writer.
    again = ResultStore(path)
    assert len(again) == 2 and "a" in again and 2 in again and "2" in again
    assert again.get(2)["x"] == "二"
    assert [r["id"] for r in again] == ["a", 2]


def test_duplicate_key_is_refused(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    store.add({"id": "a"})
    with pytest.raises(LwError, match="already stored"):
        store.add({"id": "a"})
    assert (tmp_path / "r.jsonl").read_text().count("\n") == 1


def test_record_without_key_is_refused(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl", key="prompt_id")
    with pytest.raises(LwError, match="prompt_id"):
        store.add({"id": "a"})


def test_torn_last_line_is_reported_dropped_and_repaired(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "a"}) + "\n" + '{"id": "b", "text": "half wri')
    with pytest.warns(UserWarning, match="torn last line"):
        store = ResultStore(path)
    assert store.keys() == ["a"] and store.torn_lines == 1
    store.add({"id": "b", "text": "whole"})
    lines = path.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["a", "b"]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "a"}) + "\n" + json.dumps({"id": "b"}))
    store = ResultStore(path)
    assert store.keys() == ["a", "b"]
    store.add({"id": "c"})
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "b", "c"]


def test_corrupt_middle_line_is_an_error_that_says_where(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "c"}\n')
    with pytest.raises(LwError, match="line 2"):
        ResultStore(path)


def test_killed_writer_loses_only_the_item_in_flight(tmp_path):
    path = tmp_path / "r.jsonl"
    script = f"""
import os
from lw.store import ResultStore
s = ResultStore({str(path)!r})
for i in range(10):
    if str(i) in s:
        continue
    if i == 6:
        with open({str(path)!r}, "a") as f:
            f.write('{{"id": "6", "te')  # the crash comes mid-write
        os._exit(1)
    s.add({{"id": str(i)}})
"""
    assert subprocess.run([sys.executable, "-c", script]).returncode == 1
    with pytest.warns(UserWarning):
        store = ResultStore(path)
    assert store.keys() == [str(i) for i in range(6)]
    # The rerun does only what is missing.
    done = [str(i) for i in range(10) if str(i) not in store]
    for k in done:
        store.add({"id": k})
    assert done == ["6", "7", "8", "9"]
    ids = [json.loads(x)["id"] for x in path.read_text().splitlines()]
    assert ids == [str(i) for i in range(10)]


def test_keyed_path_changes_with_the_settings(tmp_path):
    from lw.store import keyed_path

    a = keyed_path(tmp_path, "seq", model="m", temperature=0.8)
    assert a == keyed_path(tmp_path, "seq", temperature=0.8, model="m")
    assert a != keyed_path(tmp_path, "seq", model="m", temperature=0.9)
    assert a.name.startswith("seq-") and a.suffix == ".jsonl"


def test_keyed_path_changes_when_a_local_checkpoint_is_retrained(tmp_path):
    from lw.store import keyed_path

    ckpt = tmp_path / "sft" / "final"
    ckpt.mkdir(parents=True)
    spec = f"hf:{ckpt}"
    (ckpt / "lw_train.json").write_text(json.dumps({"fingerprint": "aaa"}))
    first = keyed_path(tmp_path, "preds", model=spec, temperature=0.5)
    assert first == keyed_path(tmp_path, "preds", model=spec, temperature=0.5)
    (ckpt / "lw_train.json").write_text(json.dumps({"fingerprint": "bbb"}))  # same path, new weights
    assert first != keyed_path(tmp_path, "preds", model=spec, temperature=0.5)
    # Hub ids and servers are keyed by their spec alone, as before.
    assert keyed_path(tmp_path, "p", model="hf:org/name") == keyed_path(tmp_path, "p", model="hf:org/name")


def test_jsonl_readers_keep_records_whose_text_holds_unicode_line_separators(tmp_path):
    """Models write U+2028 and U+0085; json.dumps(ensure_ascii=False) keeps them raw, and
    str.splitlines would cut such a record in two (a 05 run failed on one)."""
    import lw

    convs = [{"messages": [{"role": "user", "content": "Write."},
                           {"role": "assistant", "content": "One\u2028two\x85three\u2029."}]},
             {"messages": [{"role": "user", "content": "Again."},
                           {"role": "assistant", "content": "Plain."}]}]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in convs),
                    encoding="utf-8")
    assert lw.sft.load_conversations(path) == convs
    instr = tmp_path / "instructions.jsonl"
    instr.write_text(json.dumps({"prompt": "Write 900 words\u2028on tides."}, ensure_ascii=False)
                     + "\n", encoding="utf-8")
    assert [r["prompt"] for r in lw.data.instructions(str(instr))] == ["Write 900 words\u2028on tides."]
