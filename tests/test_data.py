"""lw.data and lw.conversations: instruction sources, the filters, saved files and mixing."""

import json

import pytest

import lw
from lw.conversations import as_conversation, conversations_for, load, mix
from lw.data import Filters, check, instructions, select
from lw.errors import LwError
from lw.sft.config import DataSettings

GOOD = ("The harbour wakes before the town does. Fishing boats slip their ropes, gulls argue "
        "over the nets, and the baker's first loaves steam on the quay. ")
PROSE = ("By noon the market square fills with traders selling cheese, rope and copper pans. "
         "Children chase a loose goat between the stalls while an old sailor mends a sail. "
         "In the afternoon clouds roll in from the west and the fishermen return early. "
         "Evening brings lanterns, music from the tavern and the smell of grilled sardines. "
         "Late at night only the lighthouse keeper remains awake, watching the dark water. "
         "Tomorrow the ferry arrives with letters, visitors and news from the capital.")


def record(rid, text, target=100, status="done", error=None):
    return {"id": rid, "prompt": f"Write {target} words.", "length": target,
            "status": status, "error": error, "response": text, "words": lw.text.count_words(text)}


def test_filters_keep_good_text_and_name_why_others_go():
    good = record("good", GOOD + PROSE, target=120)
    short = record("short", GOOD, target=400)
    loop = record("loop", "I like the sea very much. " * 40, target=200)
    failed = record("failed", "", status="failed", error="plan: no recognisable step")
    empty = record("empty", "Yes.", target=1)
    assert check(good) is None
    assert check(short) == "too short"
    assert check(loop) == "degenerate"  # 6 usable words of 240
    assert check(failed) == "failed (plan)"
    assert check(empty) == "empty"
    result = select([good, short, loop, failed, empty])
    assert [c["id"] for c in result.kept] == ["good"]
    assert result.reasons == {"too short": 1, "degenerate": 1, "failed (plan)": 1, "empty": 1}
    assert result.kept[0]["messages"][1]["content"] == (GOOD + PROSE).strip()
    assert check(short, Filters(min_ratio=0.05)) is None


SALAD = " ".join(["answer requested"] * 30)


def test_degenerate_filter_catches_salad_and_keeps_repeated_clauses():
    # The SFT answers' failure: prose that decays into salad near its end (86 usable words of
    # 144). The filter needs no repetition bound to see it (test_text shows one it slips under).
    decayed = record("decayed", GOOD + PROSE + " " + SALAD, target=120)
    assert check(decayed) == "degenerate"
    assert check(decayed, Filters(max_repetition=1.0)) == "degenerate"
    assert check(decayed, Filters(min_usable_share=0.5, max_repetition=1.0)) is None
    # An answer that repeats itself throughout, with no degenerate tail, is "repetitive".
    restated = record("restated", (GOOD + PROSE) * 2, target=120)
    assert lw.text.usable_words(restated["response"]) == restated["words"]
    assert check(restated) == "repetitive"
    assert check(restated, Filters(max_repetition=1.0)) is None
    # Legal boilerplate repeats clauses without degenerating.
    clauses = " ".join(f"Section {n}. The Licensee shall not {verb} the Software except as "
                       f"permitted by the terms of this Agreement." for n, verb in enumerate(
                           ["sell", "rent", "lend", "modify", "publish", "translate"]))
    legal = record("legal", clauses, target=80)
    assert check(legal, Filters(max_repetition=1.0)) is None
    result = select([decayed, restated, legal], Filters(max_repetition=1.0))
    assert result.reasons == {"degenerate": 1}


def test_saved_data_has_jsonl_a_datasets_folder_and_a_card(tmp_path):
    from datasets import load_from_disk

    result = select([record("good", GOOD + PROSE, target=120), record("s", GOOD, target=900)])
    lw.data.save(result, tmp_path, "demo", source={"model": "fake"})
    lines = result.jsonl.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["messages"][0]["role"] == "user"
    assert load_from_disk(str(result.dataset_dir))[0]["messages"][1]["role"] == "assistant"
    card = result.card.read_text()
    assert "kept 1 of 2" in card and "too short 1" in card
    assert load(result.jsonl)[0]["messages"] == result.kept[0]["messages"]


def test_build_runs_agentwrite_and_resumes(tmp_path):
    from lw.agentwrite import AgentWriteConfig
    from lw.llm.fake import ScriptedChatModel

    def reply(conv, prefix):
        prompt = conv[-1]["content"]
        if "plan" in prompt.lower() and "Paragraph" not in (prefix or "") and "write paragraph" \
                not in prompt.lower():
            return ("Paragraph 1 - Main Point: the morning - Word Count: 200 words\n"
                    "Paragraph 2 - Main Point: the evening - Word Count: 200 words")
        return PROSE + " " + GOOD

    model = ScriptedChatModel(reply)
    rows = instructions("kit", n=3, min_words=400, max_words=1000)
    result = lw.data.build(model, rows, tmp_path, AgentWriteConfig(mode="parallel"),
                           Filters(min_ratio=0.1), progress=False)
    assert len(result.kept) + len(result.rejected) == 3
    calls = len(model.calls)
    again = lw.data.build(model, rows, tmp_path, AgentWriteConfig(mode="parallel"),
                          Filters(min_ratio=0.1), progress=False)
    assert len(model.calls) == calls and len(again.kept) == len(result.kept)
    assert result.table()["kept"].sum() == len(result.kept)


def test_short_answers_reject_replies_cut_by_the_budget(tmp_path, tiny):
    prompts = lw.data.short_prompts()[:3]
    cut = lw.data.short_answers(tiny, tmp_path, prompts=prompts, max_new_tokens=4,
                                filters=Filters(min_words=0, max_repetition=1.0))
    assert len(cut.kept) == 0 and sum(cut.reasons.values()) == 3
    kept = lw.data.short_answers(tiny, tmp_path, prompts=prompts, max_new_tokens=4,
                                 filters=Filters(min_words=0, max_repetition=1.0),
                                 require_stop=False)
    assert len(kept.kept) == 3


def test_instruction_sources(tmp_path):
    kit = instructions("kit", min_words=500, max_words=1500)
    # More than the range holds is refused, naming what there is (not quietly fewer).
    with pytest.raises(LwError, match=r"8 kit instructions asked for, but only 5 ask for "
                                      r"2000-2000 words \(2000\)"):
        instructions("kit", n=8, min_words=2000, max_words=2000)
    assert len(instructions("kit", n=8, min_words=2000, max_words=3000)) == 8
    assert len(kit) >= 20 and all(500 <= r["length"] <= 1500 for r in kit)
    assert len({r["type"] for r in instructions("kit")}) == 7 and len(instructions("kit")) >= 48
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"prompt": "Write a 3000-word essay on rivers."}) + "\n"
                    + json.dumps({"prompt": "A poem.", "length": 120, "id": "p"}) + "\n")
    rows = instructions(str(mine))
    assert [(r["id"], r["length"]) for r in rows] == [("mine-0", 3000), ("p", 120)]
    with pytest.raises(LwError, match="neither"):
        instructions(str(tmp_path / "nope.jsonl"))
    with pytest.raises(LwError, match="from the hub"):
        instructions("hub:THUDM/LongWriter-6k")  # offline in tests: a clear error


def test_conversation_formats_and_mixing(tmp_path):
    assert as_conversation({"prompt": "p", "response": "r"})["messages"][1] == {
        "role": "assistant", "content": "r"}
    with pytest.raises(LwError, match="expected 'messages'"):
        as_conversation({"question": "q"})
    with pytest.raises(LwError, match="no non-empty assistant"):
        as_conversation({"messages": [{"role": "user", "content": "x"},
                                      {"role": "assistant", "content": " "}]})
    long = [{"messages": [{"role": "user", "content": f"l{i}"},
                          {"role": "assistant", "content": "x"}]} for i in range(10)]
    general = [{"messages": [{"role": "user", "content": f"g{i}"},
                             {"role": "assistant", "content": "y"}]} for i in range(30)]
    mixed = mix(long, general, ratio=0.5)
    assert len(mixed) == 15 and all(c in mixed for c in long)
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in general))
    long_file = tmp_path / "l.jsonl"
    long_file.write_text("".join(json.dumps(c) + "\n" for c in long))
    convs = conversations_for(DataSettings(train=str(long_file), general=str(path),
                                           general_ratio=2.0))
    assert len(convs) == 30
    assert len(conversations_for(DataSettings(general=str(path), general_ratio=2.0), long)) == 10
    with pytest.raises(LwError, match="not found"):
        load(tmp_path / "missing.jsonl")


def test_records_written_with_the_old_names_are_still_read():
    """AgentWrite files from before 2026-11-26 say instruction/target_words/text."""
    body = GOOD + PROSE
    old = {"id": "old", "instruction": "Write 120 words.", "target_words": 120, "status": "done",
           "text": body, "words": lw.text.count_words(body)}
    assert check(old) is None
    assert check({**old, "target_words": 1000}) == "too short"  # the old length is read too
    conv = lw.data.to_conversation(old)
    assert conv["messages"][0]["content"] == "Write 120 words." and conv["length"] == 120
    assert conv["messages"][1]["content"] == body.strip()


def test_instruction_files_with_bad_rows_say_which_and_what_to_do(tmp_path):
    def source(*rows, raw=None):
        path = tmp_path / "bad.jsonl"
        path.write_text(raw or "".join(json.dumps(r) + "\n" for r in rows))
        return str(path)

    # A target of 0 words no longer becomes the default 2,000 words silently.
    with pytest.raises(LwError, match=r"record 2: 'length'.*at least 1, got 0"):
        instructions(source({"prompt": "A poem.", "length": 120}, {"prompt": "Hi", "length": 0}))
    with pytest.raises(LwError, match=r"record 1 has no 'length'.*add \"length\""):
        instructions(source({"prompt": "Write about the sea."}))
    with pytest.raises(LwError, match=r"record 1.*'length'"):  # "0 words" is no target either
        instructions(source({"prompt": "Write 0 words about the sea."}))
    with pytest.raises(LwError, match=r"record 1 has no 'prompt'.*it has length"):
        instructions(source({"length": 300}))
    with pytest.raises(LwError, match="record 1 is not valid JSON"):
        instructions(source(raw="{oops\n"))
    with pytest.raises(LwError, match="appears twice"):
        instructions(source({"id": "a", "prompt": "A poem.", "length": 9},
                            {"id": "a", "prompt": "A song.", "length": 9}))
    rows = instructions(source({"instruction": "Tell a story.", "target_words": 400}))
    assert rows[0]["prompt"] == "Tell a story." and rows[0]["length"] == 400


def test_training_rows_of_the_wrong_shape_are_named(tmp_path):
    with pytest.raises(LwError, match=r"data\[0\]: 'messages' must be a list"):
        conversations_for(None, [{"messages": [{"content": "no role"}]}])
    with pytest.raises(LwError, match=r"data\[1\]: expected a dict"):
        conversations_for(None, [{"prompt": "p", "response": "r"}, "just text"])
    bad = tmp_path / "t.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n{cut\n")
    with pytest.raises(LwError, match=r"t.jsonl:2 is not valid JSON"):
        load(bad)
