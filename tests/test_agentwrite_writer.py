"""The AgentWrite loop: scripted fake model for the logic, real backends end to end."""

import json
import re
import warnings

import pytest

import lw
from lw.agentwrite import AgentWriteConfig, AgentWriter, make_items, strip_label, write_direct
from lw.errors import LwError
from lw.llm.fake import ScriptedChatModel
from lw.text import count_words

PLAN = ("Paragraph 1 - Main Point: Beginning - Word Count: 300 words\n"
        "Paragraph 2 - Main Point: Middle - Word Count: 500 words\n"
        "Paragraph 3 - Main Point: End - Word Count: 300 words")


def scripted(plan=PLAN, fail_on=None, interrupt_on=None, log=None, error=None):
    """A fake that plans with ``plan`` and writes 'P<k> of <item>.' for paragraph k; paragraph
    ``fail_on`` fails with ``error`` (default: an error the backend does not call an outage)."""
    def reply(conv, prefix):
        prompt = conv[-1]["content"]
        task = re.search(r"(?:task|任务)[:：]\n(.*)", prompt).group(1)
        if prefix is not None:  # a scaffolded plan line
            return " point for " + task[:10]
        if "planning a long piece" in prompt or "写作计划。" in prompt:
            return plan
        m = re.search(r"write paragraph (\d+) of|只写第(\d+)段", prompt)
        k = int(m.group(1) or m.group(2))
        if log is not None:
            log.append((task, k))
        if interrupt_on == (task, k):
            raise KeyboardInterrupt
        if fail_on == (task, k):
            return error or RuntimeError("backend fell over")
        return f"P{k} of {task.rstrip('.')}."
    return ScriptedChatModel(reply)


def test_sequential_rounds_see_all_text_so_far(tmp_path):
    fake = scripted()
    recs = AgentWriter(fake, tmp_path / "r.jsonl").run(["Write A, 1000 words.",
                                                        "Write B, 1000 words."])
    assert [r["status"] for r in recs] == ["done", "done"]
    assert recs[0]["response"] == "P1 of Write A, 1000 words.\n\nP2 of Write A, 1000 words.\n\n" \
                              "P3 of Write A, 1000 words."
    assert fake.batches == [2, 2, 2, 2]  # plans together, then each round as one batch
    prompts = [c[0][-1]["content"] for c in fake.calls]
    # Two plan calls, then rounds: paragraph 1 of both items, then 2 of both, then 3 of both.
    order = [m.group(1) if (m := re.search(r"write paragraph (\d) of 3 only", p)) else "plan"
             for p in prompts]
    assert order == ["plan", "plan", "1", "1", "2", "2", "3", "3"]
    third_a = prompts[6]
    assert "P1 of Write A" in third_a and "P2 of Write A" in third_a and "P1 of Write B" not in third_a
    assert "Paragraph 3 - Main Point: End - Word Count: 300 words" in third_a
    assert "Nothing has been written yet" in prompts[2]
    assert recs[0]["plan_mode"] == "free" and recs[0]["words"] == 12  # "P1" is no word
    assert len(recs[0]["steps"]) == 4 and recs[0]["prompt_version"] == "agentwrite_en@1"


def test_parallel_paragraphs_see_only_instruction_and_plan(tmp_path):
    fake = scripted()
    AgentWriter(fake, tmp_path / "r.jsonl", AgentWriteConfig(mode="parallel")).run(["Write A."])
    AgentWriter(fake, tmp_path / "r.jsonl", AgentWriteConfig(mode="parallel")).run(["Write B."])
    writes = [c[0][-1]["content"] for c in fake.calls if "write paragraph" in c[0][-1]["content"]]
    assert len(writes) == 6
    assert all("P1 of" not in p and "written separately" in p for p in writes)
    # Independent paragraphs go out together, one call per token budget: 300 words, 500 words.
    assert fake.batches == [1, 2, 1, 1, 2, 1]


def test_paragraph_budget_follows_its_word_count(tmp_path):
    fake = scripted()
    AgentWriter(fake, tmp_path / "r.jsonl").run(["Write A."])
    budgets = [c[2].max_new_tokens for c in fake.calls]
    # plan 1024; 300 words -> 482 tokens -> 512; 500 words -> 782 -> 896
    assert budgets == [1024, 512, 896, 512]


def test_crash_mid_run_resumes_without_redoing_or_duplicating(tmp_path):
    path = tmp_path / "r.jsonl"
    items = ["Write A.", "Write B."]
    with pytest.raises(KeyboardInterrupt):
        AgentWriter(scripted(interrupt_on=("Write B.", 2)), path).run(items)
    # Done before the interrupt: both plans, paragraph 1 of both. (A's paragraph 2 was in the
    # same batch as B's, which was interrupted, so it is redone: one call is the unit.)
    log = []
    recs = AgentWriter(scripted(log=log), path).run(items)
    assert sorted(log) == [("Write A.", 2), ("Write A.", 3), ("Write B.", 2), ("Write B.", 3)]
    assert [r["status"] for r in recs] == ["done", "done"]
    assert recs[1]["paragraphs"] == ["P1 of Write B.", "P2 of Write B.", "P3 of Write B."]
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    assert len(keys) == len(set(keys))
    again = scripted(log=[])
    assert AgentWriter(again, path).run(items) == recs and again.calls == []


def test_parallel_mode_stores_each_part_of_a_round_as_it_finishes(tmp_path):
    path = tmp_path / "r.jsonl"
    items = [f"Write {c}." for c in "ABCDE"]  # 5 items x 3 paragraphs; parts of 2 batches of 3
    first = scripted(interrupt_on=("Write E.", 1))
    first.batch_size = 3
    with pytest.raises(KeyboardInterrupt):
        AgentWriter(first, path, AgentWriteConfig(mode="parallel")).run(items)
    log = []
    again = scripted(log=log)
    again.batch_size = 3
    recs = AgentWriter(again, path, AgentWriteConfig(mode="parallel")).run(items)
    assert sorted({task for task, _ in log}) == ["Write E."]  # A-D were stored before the crash
    assert [r["status"] for r in recs] == ["done"] * 5


def test_backend_error_fails_that_item_only_and_can_be_retried(tmp_path):
    path = tmp_path / "r.jsonl"
    items = ["Write A.", "Write B."]
    with pytest.warns(UserWarning, match="1 of 2 items failed and are stored as failed"):
        recs = AgentWriter(scripted(fail_on=("Write A.", 2)), path).run(items)
    assert recs[0]["status"] == "failed" and "paragraph 2" in recs[0]["error"]
    assert "backend fell over" in recs[0]["error"]
    assert recs[1]["status"] == "done"
    quiet = scripted(log=[])
    with pytest.warns(UserWarning, match="stored by an earlier run"):
        assert AgentWriter(quiet, path).run(items)[0]["status"] == "failed" and quiet.calls == []
    log = []
    retried = AgentWriter(scripted(log=log), path).run(items, retry_failed=True)
    assert retried[0]["status"] == "done" and log == [("Write A.", 2), ("Write A.", 3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert AgentWriter(scripted(), path).run(items) == retried
    assert not [w for w in caught if "AgentWrite" in str(w.message)]  # the failure is mended


def test_a_paragraph_outage_leaves_the_item_pending_and_a_plain_rerun_finishes_it(tmp_path):
    path = tmp_path / "r.jsonl"
    items = ["Write A.", "Write B."]
    with pytest.warns(UserWarning, match=r"1 of 2 items got no answer.*pending.*rerun with the "
                                         r"same path"):
        recs = AgentWriter(scripted(fail_on=("Write A.", 2), error=ConnectionError("refused")),
                           path).run(items)
    assert recs[0]["status"] == "failed" and recs[0]["pending"] is True
    assert "refused" in recs[0]["error"] and recs[0]["paragraphs"] == ["P1 of Write A."]
    assert recs[1]["status"] == "done" and not recs[1].get("pending")
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    a = recs[0]["id"]
    assert not any("failed" in k for k in keys) and f"{a}/p1" in keys  # paragraph 1 is kept
    assert f"{a}/p2" not in keys
    log = []
    again = AgentWriter(scripted(log=log), path).run(items)  # no retry_failed needed
    assert log == [("Write A.", 2), ("Write A.", 3)]  # nothing finished is asked again
    assert [r["status"] for r in again] == ["done", "done"] and again[1] == recs[1]


def test_a_parallel_outage_keeps_the_paragraphs_that_finished(tmp_path):
    path = tmp_path / "r.jsonl"
    cfg = AgentWriteConfig(mode="parallel")
    with pytest.warns(UserWarning, match="pending"):
        rec = AgentWriter(scripted(fail_on=("Write A.", 2), error=TimeoutError("timed out")),
                          path, cfg).run(["Write A."])[0]
    assert rec["pending"] and rec["paragraphs"] == ["P1 of Write A."]
    log = []
    rec = AgentWriter(scripted(log=log), path, cfg).run(["Write A."])[0]
    assert log == [("Write A.", 2)]  # paragraph 3 finished during the outage and was stored
    assert rec["paragraphs"] == ["P1 of Write A.", "P2 of Write A.", "P3 of Write A."]


def test_stored_failures_are_returned_with_a_warning_naming_retry_failed(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.warns(UserWarning, match=r"1 of 1 items failed and are stored as failed"):
        first = AgentWriter(scripted(fail_on=("Write A.", 2)), path).run(["Write A."])[0]
    # A refused request: stored, with what to change (not "rerun").
    assert first["pending"] is False and "shorten the instruction" in first["error"]
    assert "max_new_tokens" in first["error"] and "rerun" not in first["error"]
    quiet = scripted(log=[])
    with pytest.warns(UserWarning, match=r"failures stored by an earlier run.*"
                                         r"retry_failed=True"):
        assert AgentWriter(quiet, path).run(["Write A."])[0]["status"] == "failed"
    assert quiet.calls == []


def test_an_outage_stored_as_a_failure_by_older_versions_is_continued(tmp_path):
    """Before failures had kinds, an outage was stored as the item's failure; a plain rerun
    now reads it as the outage it was and continues the item."""
    path = tmp_path / "r.jsonl"
    with pytest.warns(UserWarning):
        AgentWriter(scripted(fail_on=("Write A.", 2)), path).run(["Write A."])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in lines:
        if rec["key"].endswith("/failed1"):
            del rec["error_kind"]
            rec["error"] = "paragraph 2: gave up after 6 attempts: connection failed: refused"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    log = []
    rec = AgentWriter(scripted(log=log), path).run(["Write A."])[0]
    assert rec["status"] == "done" and log == [("Write A.", 2), ("Write A.", 3)]


def test_through_a_server_an_outage_is_pending_and_a_400_is_stored_with_advice(tmp_path,
                                                                               server):
    """The real OpenAI-compatible backend against lw.serve: item a's plan meets 503s past the
    client's retries (pending, nothing stored), b is written; a plain rerun against the healed
    server writes a alone. Then a 400 (prompt over the context) is stored with advice, returned
    by a plain rerun without a request, and asked again only with retry_failed=True."""
    model = lw.llm.load("openai:tiny-random", base_url=server.base_url, api_key=server.key,
                        continue_final_message=True, concurrency=1, backoff=0.01,
                        max_retries=1)
    cfg = AgentWriteConfig(tokens_per_word=0.05, token_margin=8, plan_max_new_tokens=16,
                           scaffold_words_per_step=200)
    items = [{"id": "a", "prompt": "Write about tides.", "length": 400},
             {"id": "b", "prompt": "Write about bees.", "length": 400}]
    path = tmp_path / "r.jsonl"
    server.arm(["503", "503"])  # a's plan: the first try and its one retry
    with pytest.warns(UserWarning, match=r"1 of 2 items got no answer.*503.*pending"):
        recs = AgentWriter(model, path, cfg).run(items)
    assert [r["status"] for r in recs] == ["failed", "done"] and recs[0]["pending"] is True
    keys = [json.loads(x)["key"] for x in path.read_text().splitlines()]
    assert not [k for k in keys if k.startswith("a/")] and "b/final" in keys
    server.arm([])
    again = AgentWriter(model, path, cfg).run(items)
    assert [r["status"] for r in again] == ["done", "done"] and again[1] == recs[1]
    assert 5 <= server.seen() <= 7  # item a's requests only (see test_openai_server_end_to_end)

    refused = tmp_path / "s.jsonl"
    server.arm(["400"])
    with pytest.warns(UserWarning, match="stored as failed"):
        rec = AgentWriter(model, refused, cfg).run(items[:1])[0]
    assert rec["status"] == "failed" and rec["pending"] is False
    assert "400" in rec["error"] and "maximum context length" in rec["error"]
    assert "shorten the instruction" in rec["error"] and "rerun" not in rec["error"]
    assert server.seen() == 1  # a 400 is never retried
    with pytest.warns(UserWarning, match="stored by an earlier run.*retry_failed=True"):
        assert AgentWriter(model, refused, cfg).run(items[:1])[0]["status"] == "failed"
    assert server.seen() == 1
    assert AgentWriter(model, refused, cfg).run(items[:1], retry_failed=True)[0]["status"] == \
        "done"


def test_write_direct_follows_the_runners_rule_for_failures(tmp_path):
    """write_direct answers through lw.generation.predict: an outage and a refusal are both
    returned failed (the outage pending) and neither is stored; a rerun asks only for them."""
    path = tmp_path / "d.jsonl"
    items = [{"id": "a", "prompt": "Write A."}, {"id": "b", "prompt": "Write B."},
             {"id": "c", "prompt": "Write C."}]
    # The OpenAI-compatible backend's words when its retries are spent mark an outage.
    errors = {"Write A.": ConnectionError("gave up after 3 attempts: reset"),
              "Write B.": RuntimeError("400: too long")}

    def reply(conv, prefix):
        return errors.get(conv[-1]["content"], "An answer.")

    with pytest.warns(UserWarning, match="2 of 3 requests .* failed; none is stored"):
        recs = write_direct(ScriptedChatModel(reply), items, path, max_new_tokens=16)
    assert [r["status"] for r in recs] == ["failed", "failed", "done"]
    assert recs[0]["pending"] is True  # an outage: a plain rerun asks it again
    assert recs[1]["pending"] is False and "400: too long" in recs[1]["error"]
    assert all(r["mode"] == "direct" for r in recs)
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["c"]
    errors.clear()
    fake = ScriptedChatModel(reply)
    recs = write_direct(fake, items, path, max_new_tokens=16)
    assert len(fake.calls) == 2 and [r["status"] for r in recs] == ["done"] * 3
    assert len(lw.store.ResultStore(path)) == 3


def test_unusable_free_plan_falls_back_to_scaffold(tmp_path):
    fake = scripted(plan="I would love to help! Here is a story: once upon a time...")
    rec = AgentWriter(fake, tmp_path / "r.jsonl").run(
        [{"id": "x", "prompt": "Write a story.", "length": 1200}])[0]
    assert rec["status"] == "done" and rec["plan_mode"] == "scaffold"
    assert "free-form plan unusable" in rec["plan_note"]
    assert [s["words"] for s in rec["plan"]] == [400, 400, 400]
    assert rec["plan"][0]["main_point"] == "point for Write a st"
    prefixes = [c[1] for c in fake.calls if c[1]]
    assert prefixes[0] == "Paragraph 1 - Main Point:"
    assert prefixes[1].startswith("Paragraph 1 - Main Point: point for Write a st - Word Count: "
                                  "400 words\nParagraph 2 - Main Point:")
    assert all(c[2].stop == ("\n",) for c in fake.calls if c[1])


def test_a_free_plan_that_fails_says_why_and_what_to_do(tmp_path):
    rec = AgentWriter(scripted(plan="no plan here"), tmp_path / "s.jsonl",
                      AgentWriteConfig(plan_mode="free")).run(["Write A."])[0]
    assert rec["status"] == "failed" and "no plan step found" in rec["error"]
    assert "plan_mode='auto' scaffolds" in rec["error"]


def test_chinese_instructions_get_chinese_prompts(tmp_path):
    plan = "第1段 - 主要观点：开头 - 字数：300字\n第2段 - 主要观点：结尾 - 字数：300字"
    fake = scripted(plan=plan)
    rec = AgentWriter(fake, tmp_path / "r.jsonl").run(["写一篇600字的文章，介绍长城。"])[0]
    assert rec["language"] == "zh" and rec["prompt_version"] == "agentwrite_zh@1"
    assert rec["length"] == 600 and rec["length_source"] == "instruction"
    assert "第1段 - 主要观点：开头 - 字数：300字" in fake.calls[1][0][-1]["content"]


def test_resuming_with_other_settings_is_refused(tmp_path):
    AgentWriter(scripted(), tmp_path / "r.jsonl").run(["Write A."])
    with pytest.raises(LwError, match="other settings"):
        AgentWriter(scripted(), tmp_path / "r.jsonl", AgentWriteConfig(mode="parallel"))


def test_bad_input_is_explained():
    with pytest.raises(LwError, match="row 1: 'prompt' is '  '; every item needs text"):
        make_items(["  "])
    with pytest.raises(LwError, match="language"):
        AgentWriteConfig(language="fr")
    with pytest.raises(LwError, match="mode"):
        AgentWriteConfig(mode="fast")
    with pytest.raises(LwError, match="share an id"):
        make_items([{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}])
    items = make_items(["Write about tides.", {"prompt": "x", "length": 300}])
    assert items[0]["length"] == 2000 and items[0]["length_source"] == "default"
    assert items[1]["length"] == 300 and items[1]["length_source"] == "given"


def test_strip_label_keeps_subheadings():
    assert strip_label("Paragraph 2 - Main Point: Middle\nThe text.") == "The text."
    assert strip_label("**Paragraph 2**\n\nThe text.") == "The text."
    assert strip_label("## The Storm\nThe text.") == "## The Storm\nThe text."
    assert strip_label("Paragraphs are fun.") == "Paragraphs are fun."
    assert strip_label("Sure! Here is paragraph 2:\n\nThe text.") == "The text."
    assert strip_label("Here is a continuation of the story:\nThe text.") == "The text."
    assert strip_label("Here is what she found: a note.") == "Here is what she found: a note."


def test_tiny_random_end_to_end(tmp_path, tiny):
    cfg = AgentWriteConfig(tokens_per_word=0.05, token_margin=8, plan_max_new_tokens=24,
                           scaffold_words_per_step=200)
    items = [{"id": "a", "prompt": "Write about tides.", "length": 400},
             {"id": "b", "prompt": "Write about bees and flowers.", "length": 600}]
    recs = AgentWriter(tiny, tmp_path / "r.jsonl", cfg).run(items)
    assert [r["status"] for r in recs] == ["done", "done"]
    assert [r["plan_mode"] for r in recs] == ["scaffold", "scaffold"]  # random text never parses
    assert [len(r["paragraphs"]) for r in recs] == [2, 3]
    assert all(r["completion_tokens"] > 0 and r["model"]["spec"] == "tiny-random" for r in recs)
    direct = write_direct(tiny, items, tmp_path / "d.jsonl", max_new_tokens=8)
    # Each answer stops at its 8-token budget or earlier at an end-of-text token, and its word
    # count is the count of the text stored beside it.
    assert [d["status"] for d in direct] == ["done", "done"]
    for d in direct:
        assert d["completion_tokens"] == 8 if d["finish_reason"] == "length" \
            else (d["finish_reason"] == "stop" and 1 <= d["completion_tokens"] < 8), d
        assert d["words"] == count_words(d["response"])


def test_an_item_is_written_the_same_alone_or_with_others(tmp_path, tiny_whole_prefill):
    """Sampling is seeded per request name, so the order of work and the other items do not
    change an item. (Batch 1 throughout: the tiny random model's distribution is nearly flat, so
    rounding differences between batch shapes, ~1e-7, could flip a draw; test_engine covers
    batch shapes. Prefix caching is off for the same reason.)"""
    tiny = tiny_whole_prefill
    cfg = AgentWriteConfig(plan_mode="scaffold", tokens_per_word=0.05, token_margin=8,
                           scaffold_words_per_step=200, temperature=1.0)
    items = [{"id": "a", "prompt": "Write about tides.", "length": 400},
             {"id": "b", "prompt": "Write about bees and flowers.", "length": 600}]
    tiny.batch_size = 1
    try:
        together = AgentWriter(tiny, tmp_path / "t.jsonl", cfg).run(items)
        alone = [AgentWriter(tiny, tmp_path / f"{it['id']}.jsonl", cfg).run([it])[0]
                 for it in reversed(items)][::-1]
    finally:
        tiny.batch_size = 4
    assert [r["plan_raw"] for r in alone] == [r["plan_raw"] for r in together]
    assert [r["response"] for r in alone] == [r["response"] for r in together]
    assert together[0]["response"] and together[0]["response"] != together[1]["response"]


def test_openai_server_end_to_end(tmp_path, server):
    server.arm([])
    model = lw.llm.load("openai:tiny-random", base_url=server.base_url, api_key=server.key,
                        continue_final_message=True)
    cfg = AgentWriteConfig(tokens_per_word=0.05, token_margin=8, plan_max_new_tokens=16,
                           scaffold_words_per_step=200)
    recs = AgentWriter(model, tmp_path / "r.jsonl", cfg).run(
        [{"id": "a", "prompt": "Write about tides.", "length": 400}])
    assert recs[0]["status"] == "done" and len(recs[0]["paragraphs"]) == 2
    # plan (free, unparsable) + 2 scaffold lines (each re-asked at most once if it repeats the
    # line above) + 2 paragraphs: 5 to 7 requests, never a duplicate paragraph
    assert 5 <= server.seen() <= 7
    keys = [json.loads(x)["key"] for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    # Every finished reply stored: the unusable free plan and each scaffold line too.
    assert sorted(keys) == sorted(["__config__", "a/free@0", "a/scaffold@0/1", "a/scaffold@0/2",
                                   "a/plan", "a/p1", "a/p2", "a/final"])
    assert server.key not in (tmp_path / "r.jsonl").read_text()


def test_short_paragraphs_are_asked_again_and_the_longer_kept(tmp_path):
    answers = {0: "Too short.", 1000: " ".join(["word"] * 120)}

    def model():
        def reply(conv, prefix):
            if "planning a long piece" in conv[-1]["content"]:
                return "Paragraph 1 - Main Point: A - Word Count: 300 words"
            return answers[fake.calls[-1][2].seed]
        fake = ScriptedChatModel(reply)
        return fake

    item = {"id": "a", "prompt": "Write A.", "length": 300}
    fake = model()
    rec = AgentWriter(fake, tmp_path / "r.jsonl", AgentWriteConfig(retry_short=1)).run([item])[0]
    assert rec["words"] == 120 and [c[2].seed for c in fake.calls] == [0, 0, 1000]
    assert rec["steps"][1]["retries"] == 1
    plain = AgentWriter(model(), tmp_path / "s.jsonl").run([item])[0]
    assert plain["words"] == 2  # retry_short defaults to 0: the paper's behaviour


def test_a_repeated_scaffold_point_is_asked_again(tmp_path):
    points = iter([" Opening", " Opening", " Something new", " Closing"])

    def reply(conv, prefix):
        if prefix is not None:
            return next(points)
        if "planning a long piece" in conv[-1]["content"]:
            return "not a plan"
        return "text"

    rec = AgentWriter(ScriptedChatModel(reply), tmp_path / "r.jsonl").run(
        [{"id": "x", "prompt": "Write a story.", "length": 1200}])[0]
    assert [s["main_point"] for s in rec["plan"]] == ["Opening", "Something new", "Closing"]


def test_long_chatty_preamble_is_stripped():
    first = ("Here's the next paragraph written without any final sentence to finish your "
             "part-written piece:")
    assert strip_label(first + "\n\nBeneath the surface.") == "Beneath the surface."


# -- the paper's prompts (lw.paper.prompts stand-ins from the official_prompts fixture) -------------
OFFICIAL_PLAN = ("Paragraph 1 - Main Point: Beginning - Word Count: approximately 300 words\n\n"
                 "Paragraph 2 - Main Point: Middle - Word Count: 400-600 words\n\n"
                 "**Paragraph 3 - Main Point:** End - **Word Count:** 300 words\n")


def official_fake(plan=OFFICIAL_PLAN):
    """Plans with ``plan`` for the stand-in official plan prompt; writes each step's reply with
    an echoed label (as models do) so the raw and cleaned texts differ."""
    def reply(conv, prefix):
        prompt = conv[-1]["content"]
        if prefix is not None:
            return " a scaffolded point"
        if prompt.startswith("Split this writing task"):
            return plan
        step = re.search(r"Now write (.*) only\.$", prompt, re.S).group(1)
        k = re.search(r"Paragraph (\d+)", step).group(1)
        return f"Paragraph {k}:\nText {k}."
    return ScriptedChatModel(reply)


def test_official_prompts_are_filled_as_the_official_scripts_fill_them(tmp_path, official_prompts):
    from lw.paper import prompts as paper_prompts

    fake = official_fake()
    cfg = AgentWriteConfig(prompts="official")
    rec = AgentWriter(fake, tmp_path / "r.jsonl", cfg).run(["Write A, 1000 words."])[0]
    prompts = [c[0][-1]["content"] for c in fake.calls]
    assert prompts[0] == official_prompts["plan"].replace("$INST$", "Write A, 1000 words.")
    plan = ("Paragraph 1 - Main Point: Beginning - Word Count: approximately 300 words\n"
            "Paragraph 2 - Main Point: Middle - Word Count: 400-600 words\n"
            "**Paragraph 3 - Main Point:** End - **Word Count:** 300 words")
    # $TEXT$: the earlier replies as written (labels kept), blank-line joined; $STEP$: the line.
    texts = ["", "Paragraph 1:\nText 1.", "Paragraph 1:\nText 1.\n\nParagraph 2:\nText 2."]
    for k, (prompt, text) in enumerate(zip(prompts[1:], texts, strict=True)):
        line = plan.split("\n")[k]
        assert prompt == (f"Task:\nWrite A, 1000 words.\nPlan:\n{plan}\nWritten so far:\n{text}\n"
                          f"Now write {line} only.")
    assert rec["status"] == "done" and rec["paragraphs"] == ["Text 1.", "Text 2.", "Text 3."]
    assert [(s["words"], s["count_source"]) for s in rec["plan"]] == [(300, "plan"),
                                                                       (500, "range"), (300, "plan")]
    version = f"{paper_prompts.version('plan')}+{paper_prompts.version('write')}"
    assert rec["prompts"] == "official" and rec["prompt_version"] == version
    assert rec["prompt_versions"] == {"plan": "official:plan.txt@6090a27",
                                      "write": "official:write.txt@3fcfdff"}
    assert rec["settings"]["prompts"] == "official"


def test_official_prompts_resume_with_the_replies_as_written(tmp_path, official_prompts):
    path = tmp_path / "r.jsonl"
    cfg = AgentWriteConfig(prompts="official")

    def stop_at_third(conv, prefix):
        if "Now write **Paragraph 3" in conv[-1]["content"]:
            raise KeyboardInterrupt
        return official_fake()._next(conv, prefix)

    with pytest.raises(KeyboardInterrupt):
        AgentWriter(ScriptedChatModel(stop_at_third), path, cfg).run(["Write A."])
    fake = official_fake()
    rec = AgentWriter(fake, path, cfg).run(["Write A."])[0]
    assert len(fake.calls) == 1 and rec["paragraphs"] == ["Text 1.", "Text 2.", "Text 3."]
    assert "Written so far:\nParagraph 1:\nText 1.\n\nParagraph 2:\nText 2.\n" in \
        fake.calls[0][0][-1]["content"]


def test_official_parallel_steps_see_no_text(tmp_path, official_prompts):
    fake = official_fake()
    AgentWriter(fake, tmp_path / "r.jsonl",
                AgentWriteConfig(prompts="official", mode="parallel")).run(["Write A."])
    writes = [c[0][-1]["content"] for c in fake.calls[1:]]
    assert len(writes) == 3 and all("Written so far:\n\nNow write" in p for p in writes)


def test_official_prompts_with_a_scaffolded_plan_record_the_kit_scaffold(tmp_path,
                                                                         official_prompts):
    fake = official_fake(plan="Happy to help! Once upon a time...")
    rec = AgentWriter(fake, tmp_path / "r.jsonl", AgentWriteConfig(prompts="official")).run(
        [{"id": "x", "prompt": "写一篇800字的故事。", "length": 800}])[0]
    assert rec["status"] == "done" and rec["plan_mode"] == "scaffold"
    scaffold_calls = [c for c in fake.calls if c[1] is not None]
    # The conversation is the official plan prompt; the line openings are the kit's, in English
    # (the official prompt asks for that format, in English, whatever the instruction's language).
    assert all(c[0][-1]["content"].startswith("Split this writing task") for c in scaffold_calls)
    assert scaffold_calls[0][1] == "Paragraph 1 - Main Point:"
    assert "scaffold lines from the kit's agentwrite_en@1 under the official plan prompt" in \
        rec["plan_note"]
    assert rec["prompt_version"].endswith("+scaffold:agentwrite_en@1")
    assert rec["prompt_versions"]["scaffold"] == "agentwrite_en@1"
    assert rec["language"] == "zh"


def test_kit_and_official_results_never_mix(tmp_path, official_prompts):
    kit, off = AgentWriteConfig(), AgentWriteConfig(prompts="official")
    assert (lw.store.keyed_path(tmp_path, "sequential", model="fake", **vars(kit)) !=
            lw.store.keyed_path(tmp_path, "sequential", model="fake", **vars(off)))
    AgentWriter(scripted(), tmp_path / "r.jsonl", kit).run(["Write A."])
    with pytest.raises(LwError, match="other settings"):
        AgentWriter(official_fake(), tmp_path / "r.jsonl", off)
    AgentWriter(official_fake(), tmp_path / "o.jsonl", off).run(["Write A."])
    with pytest.raises(LwError, match="other settings"):
        AgentWriter(scripted(), tmp_path / "o.jsonl", kit)
    with pytest.raises(LwError, match="English only"):
        AgentWriteConfig(prompts="official", language="zh")
    with pytest.raises(LwError, match="'kit'.*'official'"):
        AgentWriteConfig(prompts="paper")


def test_files_made_before_the_prompts_option_resume_as_kit(tmp_path):
    path = tmp_path / "r.jsonl"
    AgentWriter(scripted(), path).run(["Write A."])
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    del lines[0]["config"]["prompts"]
    for rec in lines[1:]:
        for step in rec.get("plan", []):
            step["words_given"] = step.pop("count_source") == "plan"
            del step["count_text"], step["source"]
    # Drop the final record too, so the item is rebuilt from the old plan and paragraphs.
    path.write_text("".join(json.dumps(x) + "\n" for x in lines
                            if not x["key"].endswith("/final")))
    again = scripted(log=[])
    rec = AgentWriter(again, path).run(["Write A."])[0]
    assert rec["status"] == "done" and again.calls == []
    assert rec["prompts"] == "kit" and [s["count_source"] for s in rec["plan"]] == ["plan"] * 3


def test_an_unread_plan_count_is_flagged_in_the_record(tmp_path):
    plan = PLAN.replace("Word Count: 500 words", "Word Count: a good few hundred words")
    rec = AgentWriter(scripted(plan=plan), tmp_path / "r.jsonl").run(
        [{"id": "a", "prompt": "Write A.", "length": 1200}])[0]
    assert [(s["words"], s["count_source"]) for s in rec["plan"]] == [
        (300, "plan"), (600, "default"), (300, "plan")]
    assert "word count not read for step 2 ('a good few hundred words')" in rec["plan_note"]


def test_write_keys_each_method_by_its_settings_and_resumes(tmp_path):
    """lw.agentwrite.write builds the file name itself (method, model, every setting): the same
    call resumes without a request, a changed setting starts its own file."""
    from lw.agentwrite import write

    items = [{"id": "a", "prompt": "Write A.", "length": 400}]
    first = ScriptedChatModel("An answer of a few words.")
    recs = write(first, items, tmp_path, "direct", max_new_tokens=16, progress=False)
    assert recs[0]["status"] == "done" and recs[0]["mode"] == "direct" and len(first.calls) == 1
    again = ScriptedChatModel("Another answer.")
    assert write(again, items, tmp_path, "direct", max_new_tokens=16, progress=False) == recs
    assert again.calls == []
    write(again, items, tmp_path, "direct", max_new_tokens=32, progress=False)
    assert len(again.calls) == 1 and len(list(tmp_path.glob("direct-*.jsonl"))) == 2
    with pytest.raises(LwError, match="method must be one of"):
        write(again, items, tmp_path, "outline")
