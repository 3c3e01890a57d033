"""AgentWrite on every backend (issue 15): the plan scaffold through plain chat turns where no
prefix can be continued, fresh seeds for retried plans, answers stored as they arrive, and
input checks that name the row and the field."""

import json
import re

import pytest

from lw.agentwrite import AgentWriteConfig, AgentWriter, make_items, scaffold_steps, write_direct
from lw.agentwrite.cleanup import chat_point
from lw.errors import LwError
from lw.llm.fake import ScriptedChatModel


def chat_fake(points=None, plan="Happy to help! Once upon a time...", prefix=False, log=None):
    """A model that cannot write a plan. Declared without prefix support (``prefix=False``) a
    prefix request is refused before it reaches the script, as a server without support refuses
    it. The chat scaffold's question for line i is answered ``points(i, prompt)`` (default: a
    chatty reply with an echoed label); paragraphs 'P<k>.'."""
    points = points or (lambda i, prompt: f"Sure! Here it is:\n**Paragraph {i} - Main Point:** "
                                          f"Point {i} - Word Count: 400 words")

    def reply(conv, given_prefix):
        prompt = conv[-1]["content"]
        if log is not None:
            log.append(prompt)
        if given_prefix is not None:
            return f" Prefixed point {given_prefix.count(chr(10)) + 1}"
        if m := re.search(r"Give the main point of paragraph (\d+) of", prompt):
            return points(int(m.group(1)), prompt)
        if "planning a long piece" in prompt:
            return plan
        return "P{}.".format(re.search(r"write paragraph (\d+) of", prompt).group(1))
    return ScriptedChatModel(reply, supports_prefix=prefix)


ITEM = {"id": "x", "prompt": "Write a story about a lighthouse.", "length": 1200}


def test_without_prefixes_an_unusable_plan_is_scaffolded_through_chat_turns(tmp_path):
    fake = chat_fake()
    assert fake.capabilities.continues_prefix is False
    rec = AgentWriter(fake, tmp_path / "r.jsonl").run([ITEM])[0]
    assert rec["status"] == "done" and rec["plan_mode"] == "scaffold_chat"
    assert "free-form plan unusable (no plan step found" in rec["plan_note"]
    assert "main points asked in chat turns (fake cannot continue an assistant prefix)" in \
        rec["plan_note"]
    # Read leniently: preamble, markup, echoed label and copied count gone; the kit's counts.
    assert [(s["main_point"], s["words"]) for s in rec["plan"]] == [
        ("Point 1", 400), ("Point 2", 400), ("Point 3", 400)]
    assert rec["paragraphs"] == ["P1.", "P2.", "P3."]
    assert all(prefix is None for _, prefix, _ in fake.calls)
    questions = [c[0][-1]["content"] for c in fake.calls if "Give the main point of paragraph" in
                 c[0][-1]["content"]]
    assert len(questions) == 3 and "Nothing is planned yet." in questions[0]
    # Each question sees the lines so far, in the plan's own format.
    assert ("Paragraph 1 - Main Point: Point 1 - Word Count: 400 words\nParagraph 2 - Main "
            "Point: Point 2 - Word Count: 400 words") in questions[2]
    assert "paragraph 3 of 3 only (about 400 words)" in questions[2]
    assert rec["prompt_versions"] == {"plan": "agentwrite_en@1", "write": "agentwrite_en@1",
                                      "scaffold": "agentwrite_en@1",
                                      "scaffold_chat": "agentwrite_chat_en@1"}
    assert rec["prompt_version"] == "agentwrite_en@1+agentwrite_chat_en@1"


def test_the_scaffold_follows_the_declared_capability(tmp_path):
    with_prefix = AgentWriter(chat_fake(prefix=True), tmp_path / "p.jsonl").run([ITEM])[0]
    assert with_prefix["plan_mode"] == "scaffold"
    assert with_prefix["plan"][1]["main_point"] == "Prefixed point 2"
    forced = chat_fake(prefix=True)
    rec = AgentWriter(forced, tmp_path / "c.jsonl",
                      AgentWriteConfig(plan_mode="scaffold_chat")).run([ITEM])[0]
    assert rec["plan_mode"] == "scaffold_chat" and "(plan_mode='scaffold_chat')" in \
        rec["plan_note"]
    assert all(prefix is None for _, prefix, _ in forced.calls)
    # plan_mode="scaffold" on a backend without prefixes: the chat turns, not a refusal.
    rec = AgentWriter(chat_fake(), tmp_path / "s.jsonl",
                      AgentWriteConfig(plan_mode="scaffold")).run([ITEM])[0]
    assert rec["status"] == "done" and rec["plan_mode"] == "scaffold_chat"


def test_chinese_items_get_the_chinese_chat_scaffold(tmp_path):
    def reply(conv, prefix):
        if m := re.search(r"只给出第(\d+)段（共\d+段，约\d+字）的主要观点", conv[-1]["content"]):
            return f"第{m.group(1)}段 - 主要观点：要点{m.group(1)} - 字数：400字"
        return "正文。"  # no plan in it; the paragraphs

    rec = AgentWriter(ScriptedChatModel(reply, supports_prefix=False), tmp_path / "r.jsonl").run(
        [{"id": "z", "prompt": "写一篇800字的故事。", "length": 800}])[0]
    assert rec["plan_mode"] == "scaffold_chat" and rec["language"] == "zh"
    assert [s["main_point"] for s in rec["plan"]] == ["要点1", "要点2"]
    assert rec["prompt_versions"]["scaffold_chat"] == "agentwrite_chat_zh@1"
    assert rec["paragraphs"] == ["正文。", "正文。"]


def test_empty_or_repeated_points_are_asked_again_then_flagged(tmp_path):
    asked = []

    def points(i, prompt):
        asked.append(i)
        if i == 1:
            return "Point one"
        if i == 2:
            return "Main point: Point one"  # a copy of the line above, every time
        return "   "  # nothing usable, every time

    fake = chat_fake(points=points)
    rec = AgentWriter(fake, tmp_path / "r.jsonl").run([ITEM])[0]
    assert asked == [1, 2, 2, 3, 3]
    seeds = [c[2].seed for c in fake.calls if "Give the main point" in c[0][-1]["content"]]
    assert seeds == [0, 0, 1000, 0, 1000]  # the second ask draws with another seed
    assert [s["main_point"] for s in rec["plan"]] == ["Point one", "Point one", "..."]
    assert "no main point read for step(s) 3 after a second ask" in rec["plan_note"]


def test_a_kill_mid_scaffold_loses_only_what_was_in_flight(tmp_path):
    path = tmp_path / "r.jsonl"

    def dies_at_line_3(i, prompt):
        if i == 3:
            raise KeyboardInterrupt  # kill -9 while line 3 is being asked
        return f"Point {i}"

    with pytest.raises(KeyboardInterrupt):
        AgentWriter(chat_fake(points=dies_at_line_3), path).run([ITEM])
    keys = [json.loads(x)["key"] for x in path.read_text().splitlines()]
    assert keys == ["__config__", "x/free@0", "x/scaffold_chat@0/1", "x/scaffold_chat@0/2"]
    log = []
    rec = AgentWriter(chat_fake(log=log), path).run([ITEM])[0]
    # Neither the free plan nor lines 1-2 are asked again.
    assert not any("planning a long piece" in p for p in log)
    assert sum("Give the main point of paragraph" in p for p in log) == 1
    assert [s["main_point"] for s in rec["plan"]] == ["Point 1", "Point 2", "Point 3"]
    assert "free-form plan unusable" in rec["plan_note"]


def test_retry_failed_asks_a_failed_plan_with_a_fresh_seed(tmp_path):
    path = tmp_path / "r.jsonl"
    good = "Paragraph 1 - Main Point: A - Word Count: 300 words"

    def model():
        def reply(conv, prefix):
            if "planning a long piece" in conv[-1]["content"]:
                # Fails at the first seed, as a weak sampled model does now and then.
                return "no plan" if fake.calls[-1][2].seed == 0 else good
            return "Text."
        fake = ScriptedChatModel(reply, supports_prefix=False)
        return fake

    cfg = AgentWriteConfig(plan_mode="free")
    item = {**ITEM, "length": 300}
    first = model()
    assert AgentWriter(first, path, cfg).run([item])[0]["status"] == "failed"
    quiet = model()
    assert AgentWriter(quiet, path, cfg).run([item])[0]["status"] == "failed"
    assert quiet.calls == []  # without retry_failed a failure stays
    again = model()
    rec = AgentWriter(again, path, cfg).run([item], retry_failed=True)[0]
    assert rec["status"] == "done" and rec["plan"][0]["main_point"] == "A"
    assert [c[2].seed for c in first.calls] == [0]
    assert again.calls[0][2].seed == 1000  # attempt 1: not the seed that failed


def test_a_retried_scaffold_draws_with_new_seeds(tmp_path):
    path = tmp_path / "r.jsonl"
    failing = chat_fake(points=lambda i, p: RuntimeError("server down") if i == 2 else "Pt")
    rec = AgentWriter(failing, path).run([ITEM])[0]
    assert rec["status"] == "failed" and "scaffold line 2" in rec["error"]
    assert "server down" in rec["error"] and rec["plan_note"].startswith("free-form")
    fake = chat_fake()
    rec = AgentWriter(fake, path).run([ITEM], retry_failed=True)[0]
    assert rec["status"] == "done"
    # Attempt 1 asks the free plan again (seed 0 + 1000) and its lines with seed 2000.
    assert [c[2].seed for c in fake.calls][:4] == [1000, 2000, 2000, 2000]
    keys = [json.loads(x)["key"] for x in path.read_text().splitlines()]
    assert "x/scaffold_chat@1/3" in keys and "x/scaffold_chat@0/1" in keys


class CrashAfter(ScriptedChatModel):
    """Stands in for a kill: the run dies right after the k-th finished answer is handed on."""

    def __init__(self, k, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.k, self.handed = k, 0

    def stream(self, requests, on_done, **kwargs):
        def counted(request, out):
            follow = on_done(request, out)
            self.handed += 1
            if self.handed == self.k:
                raise KeyboardInterrupt
            return follow
        super().stream(requests, counted, **kwargs)


def test_write_direct_stores_each_answer_as_it_finishes(tmp_path):
    path = tmp_path / "d.jsonl"
    items = [f"Write {c}." for c in "ABCDE"]
    with pytest.raises(KeyboardInterrupt):
        write_direct(CrashAfter(3, lambda conv, prefix: "answer to " + conv[-1]["content"]),
                     items, path, max_new_tokens=16, progress=False)
    stored = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["prompt"] for r in stored] == items[:3]
    log = []
    fake = ScriptedChatModel(lambda conv, prefix: log.append(conv[-1]["content"]) or "again")
    recs = write_direct(fake, items, path, max_new_tokens=16, progress=False)
    assert log == items[3:]  # only what the kill lost is asked again
    assert [r["response"] for r in recs] == ["answer to Write A.", "answer to Write B.",
                                             "answer to Write C.", "again", "again"]
    assert all(r["status"] == "done" and r["mode"] == "direct" for r in recs)
    assert [c[2].max_new_tokens for c in fake.calls] == [16, 16]


def test_agentwrite_stores_each_plan_and_paragraph_as_it_finishes(tmp_path):
    path = tmp_path / "r.jsonl"
    fake = CrashAfter(4, chat_fake(plan="Paragraph 1 - Main Point: A - Word Count: 300 words\n"
                                        "Paragraph 2 - Main Point: B - Word Count: 300 words"
                                   ).replies)
    with pytest.raises(KeyboardInterrupt):
        AgentWriter(fake, path).run([{"prompt": "Write A.", "length": 600},
                                     {"prompt": "Write B.", "length": 600}])
    keys = [json.loads(x)["key"].split("/", 1)[-1] for x in path.read_text().splitlines()]
    # 2 plans + 2 first paragraphs were handed on before the kill: all 4 stored.
    assert sorted(keys[1:]) == ["p1", "p1", "plan", "plan"]


@pytest.mark.parametrize(("rows", "message"), [
    ([{"id": "a", "prompt": "Write A."}, {"id": "b", "length": 300}],
     r"row 2 \(id 'b'\): 'prompt' is missing; every item needs text to write \(fields given: "
     r"id, length\)"),
    ([{"id": "a", "prompt": "Write A.", "length": 0}],
     r"row 1 \(id 'a'\): 'length' is 0; a target must be at least 1 word"),
    ([{"prompt": "Write A.", "length": -5}], r"row 1: 'length' is -5"),
    (["Write about tides.", "Write 0 words about bees."],
     r"row 2: the instruction asks for 0 words .*give 'length'"),
    ([{"prompt": "Write A.", "length": "3000"}],
     r"row 1: 'length' must be a whole number of words, got '3000'"),
    ([{"prompt": "Write A.", "length": 1500.5}], r"whole number of words, got 1500.5"),
    ([{"prompt": "Write A.", "target_words": True}], r"'length' must be a whole number"),
    (["Write A.", ["Write B."]], r"row 2 is a list .*give a string or a dict with 'prompt'"),
    ("Write A.", r"takes a list of instructions"),
])
def test_bad_rows_name_the_row_and_the_field(rows, message):
    with pytest.raises(LwError, match=message):
        make_items(rows)


def test_bad_rows_are_refused_before_any_request(tmp_path):
    fake = chat_fake()
    with pytest.raises(LwError, match="'length' is 0"):
        AgentWriter(fake, tmp_path / "r.jsonl").run([ITEM, {**ITEM, "id": "y", "length": 0}])
    with pytest.raises(LwError, match="instruction asks for 0 words"):
        write_direct(fake, ["Write 0 words."], tmp_path / "d.jsonl", max_new_tokens=8)
    assert fake.calls == []
    # Whole numbers of any numeric type are fine (pandas gives numpy ints, NaN for a gap).
    import numpy as np

    items = make_items([{"prompt": "Write A.", "length": np.int64(700)},
                        {"prompt": "Write a 900-word B.", "length": float("nan")}])
    assert [(i["length"], i["length_source"]) for i in items] == [(700, "given"),
                                                                  (900, "instruction")]


def test_targets_past_fifty_thousand_words_can_be_planned(tmp_path):
    lines = "\n".join(f"Paragraph {i} - Main Point: part {i} - Word Count: 1000 words"
                      for i in range(1, 61))
    item = {"id": "big", "prompt": "Write a long saga.", "length": 60000}
    fake = chat_fake(plan=lines)
    rec = AgentWriter(fake, tmp_path / "r.jsonl", AgentWriteConfig(plan_mode="free",
                                                                   plan_max_new_tokens=2048)
                      ).run([item], progress=False)[0]
    assert rec["status"] == "done" and len(rec["plan"]) == 60
    # A plan cut off by its token budget says so, instead of blaming the plan alone.
    cut = AgentWriter(chat_fake(plan=lines), tmp_path / "c.jsonl",
                      AgentWriteConfig(plan_mode="free", plan_max_new_tokens=300)
                      ).run([item], progress=False)[0]
    assert cut["status"] == "failed" and "cannot reach 60000 words" in cut["error"]
    assert "the reply stopped at plan_max_new_tokens=300" in cut["error"]
    assert len(scaffold_steps(60000)) == 120  # 500 words each: within the raised step limit


def test_files_made_before_the_chat_scaffold_still_resume(tmp_path):
    path = tmp_path / "r.jsonl"
    AgentWriter(chat_fake(), path).run([ITEM])
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[0]["prompts"] = {k: v for k, v in lines[0]["prompts"].items()
                           if not k.startswith("chat_")}
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    again = chat_fake()
    assert AgentWriter(again, path).run([ITEM])[0]["status"] == "done" and again.calls == []
    lines[0]["prompts"]["en"] = "agentwrite_en@0"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(LwError, match="other settings"):
        AgentWriter(chat_fake(), path)


def test_official_prompts_with_the_chat_scaffold(tmp_path, official_prompts):
    fake = chat_fake()
    fake.replies = lambda conv, prefix: (
        "Happy to help!" if conv[-1]["content"].startswith("Split this writing task") else
        "Point" if "Give the main point of paragraph" in conv[-1]["content"] else "Text.")
    rec = AgentWriter(fake, tmp_path / "r.jsonl", AgentWriteConfig(prompts="official")).run(
        [ITEM])[0]
    assert rec["status"] == "done" and rec["plan_mode"] == "scaffold_chat"
    assert ("scaffold lines asked with the kit's agentwrite_chat_en@1 in agentwrite_en@1's line "
            "format, not the official plan prompt") in rec["plan_note"]
    assert rec["prompt_version"].endswith(
        "+scaffold:agentwrite_en@1+scaffold_chat:agentwrite_chat_en@1")


@pytest.mark.parametrize(("reply", "point"), [
    ("The keeper's first winter.", "The keeper's first winter."),
    ("Sure! Here is the main point for paragraph 2:\n\nThe storm arrives.", "The storm arrives."),
    ("**Paragraph 2 - Main Point:** The storm - Word Count: 400 words", "The storm"),
    ('Main point: "The storm arrives"', "The storm arrives"),
    ("2. The storm arrives (about 400 words)", "The storm arrives"),
    ("Paragraph 2: The storm arrives.", "The storm arrives."),
    ("第2段 - 主要观点：风暴来临 - 字数：400字", "风暴来临"),
    ("第二段：风暴来临", "风暴来临"),
    ("1990s lighthouses", "1990s lighthouses"),
    ("\n\n   \n", ""),
])
def test_chat_points_are_read_leniently(reply, point):
    assert chat_point(reply) == point


def test_a_server_without_prefixes_scaffolds_through_chat_turns(tmp_path, server):
    """End to end through a real HTTP server (lw.serve on tiny-random) told not to continue
    prefixes: the random model never writes a plan, so every line comes from a chat turn."""
    import lw

    server.arm([])
    model = lw.llm.load("openai:tiny-random", base_url=server.base_url, api_key=server.key,
                        continue_final_message=False)
    assert not model.capabilities.continues_prefix
    cfg = AgentWriteConfig(tokens_per_word=0.05, token_margin=8, plan_max_new_tokens=16,
                           scaffold_words_per_step=200)
    rec = AgentWriter(model, tmp_path / "r.jsonl", cfg).run(
        [{"id": "a", "prompt": "Write about tides.", "length": 400}], progress=False)[0]
    assert rec["status"] == "done" and rec["plan_mode"] == "scaffold_chat"
    assert len(rec["paragraphs"]) == 2 and "cannot continue an assistant prefix" in rec["plan_note"]
    keys = [json.loads(x)["key"] for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted(keys) == sorted(["__config__", "a/free@0", "a/scaffold_chat@0/1",
                                   "a/scaffold_chat@0/2", "a/plan", "a/p1", "a/p2", "a/final"])
