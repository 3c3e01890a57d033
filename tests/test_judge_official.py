"""The judge's two protocols: the paper's (prompt, settings, tries, drop rule) and the kit's;
whole answers judged unless capped, and the cap reported."""

import json

import pytest

from lw import judge, longbench, scoring
from lw.errors import LwError
from lw.llm.fake import ScriptedChatModel
from lw.paper import prompts as paper_prompts

DIMS = scoring.DIMENSIONS
ROWS = [{"id": f"r{i}", "prompt": f"Write about topic {i}.", "length": 500, "language": "en"}
        for i in range(6)]
SIX = dict.fromkeys(DIMS, 4)
# A reply as GPT-4o writes it for the paper's prompt: fenced, with a raw line break inside
# its Analysis (invalid JSON, read by the script because it deletes every newline first).
OFFICIAL_REPLY = "```json\n" + json.dumps({"Analysis": "Clear.\nOn topic.", **SIX}, indent=2
                                         ).replace("\\n", "\n") + "\n```"
GOOD = json.dumps(SIX)
MISSING_LAST = json.dumps({d: 4 for d in DIMS[:-1]})  # the script counts 1 try
MISSING_MIDDLE = json.dumps({d: 4 for d in DIMS if d != "Coherence"})  # the script counts 2


def _preds(n, response="An answer."):
    return [{**r, "status": "done", "response": response} for r in ROWS[:n]]


def _by_topic(script):
    """A fake judge answering each prediction from its own list of replies, in order."""
    seen = dict.fromkeys(script, 0)

    def reply(conv, prefix):
        key = next(k for k in script if f"topic {k[1:]}." in conv[0]["content"])
        seen[key] += 1
        return script[key][seen[key] - 1]

    return ScriptedChatModel(reply), seen


def test_official_protocol_runs_the_papers_prompt_and_settings(official_prompts, tmp_path):
    fake = ScriptedChatModel(OFFICIAL_REPLY)
    out = judge.judge(fake, _preds(1, "THE ANSWER"), tmp_path / "j.jsonl", protocol="official")
    conv, prefix, cfg = fake.calls[0]
    assert conv == [{"role": "user", "content": paper_prompts.render(
        "judge", INST=ROWS[0]["prompt"], RESPONSE="THE ANSWER")}]
    assert prefix is None and cfg.temperature == 0.5 and cfg.max_new_tokens == 1024
    rec = out[0]
    assert rec["scores"] == {d: 4.0 for d in DIMS} and rec["protocol"] == "official"
    assert rec["prompt_version"] == paper_prompts.version("judge") and rec["mode"] == "text"
    assert rec["raw_scores"]["Analysis"] == "Clear.On topic."  # as the script writes it
    assert rec["attempts"] == 1 and rec["tries"] == 0 and rec["unscored"] is None


def test_official_tries_are_counted_as_the_script_counts_them(official_prompts, tmp_path):
    fake, seen = _by_topic({
        "r0": ["not json", GOOD],  # one try used, then scored
        "r1": [MISSING_MIDDLE] * 5,  # 2 tries each: asked at 0, 2, 4 -> 3 calls, dropped
        "r2": [MISSING_LAST] * 5,  # 1 try each: 5 calls, dropped
        "r3": [json.dumps({**SIX, "Clarity": "4/5"})],  # accepted; the totals cannot read it
        "r4": [ConnectionError("server down"), GOOD],  # no answer: no try used, not stored
        "r5": [MISSING_MIDDLE, MISSING_LAST, MISSING_LAST, MISSING_LAST],  # 2+1+1+1 -> dropped
    })
    with pytest.warns(UserWarning, match="no answer for 1 of 6 items.*server down"):
        out = judge.judge(fake, _preds(6), tmp_path / "j.jsonl", protocol="official")
    assert seen == {"r0": 2, "r1": 3, "r2": 5, "r3": 1, "r4": 1, "r5": 4}
    assert [j["attempts"] for j in out] == [2, 3, 5, 1, 1, 4]
    assert [j.get("tries") for j in out] == [1, 6, 5, 0, None, 5]
    assert out[0]["scores"] == {d: 4.0 for d in DIMS}
    assert [j["unscored"] for j in out[1:]] == [judge.DROPPED, judge.DROPPED, judge.UNTOTALLABLE,
                                                judge.NO_ANSWER, judge.DROPPED]
    assert "lacks 'Coherence'" in out[1]["error"] and "server down" in out[4]["error"]
    assert out[4]["pending"] and "pending" not in out[0]
    assert out[3]["raw_scores"]["Clarity"] == "4/5"
    cov = judge.coverage(out)
    assert cov["judge_dropped_official"] == 3 and cov["judge_scored"] == 1
    assert cov["judge_unscored_reasons"] == {judge.DROPPED: 3, judge.UNTOTALLABLE: 1}
    assert cov["judge_pending"] == 1 and "server down" in cov["judge_last_error"]
    assert cov["judge_coverage"] == longbench.quality(out)["judge_coverage"] == pytest.approx(16.7)
    assert longbench.quality(out)["S_q"] == 75  # the means over what the script would write
    # Verdicts are stored: a rerun asks only the item that got no answer.
    again = judge.judge(fake, _preds(6), tmp_path / "j.jsonl", protocol="official")
    assert seen["r4"] == 2 and sum(seen.values()) == 17
    assert again[4]["scores"] == {d: 4.0 for d in DIMS} and again[4]["tries"] == 0
    assert again[:4] + again[5:] == out[:4] + out[5:]
    assert judge.coverage(again)["judge_pending"] == 0


def test_official_protocol_keeps_the_scripts_values(official_prompts, tmp_path):
    reply = json.dumps({**SIX, "Relevance": 7, "Accuracy": "5"})  # no range check there
    out = judge.judge(ScriptedChatModel(reply), _preds(1), tmp_path / "j.jsonl",
                      protocol="official")
    assert out[0]["scores"] == {**{d: 4.0 for d in DIMS}, "Relevance": 7.0, "Accuracy": 5.0}
    kit = judge.judge(ScriptedChatModel(reply), _preds(1), tmp_path / "k.jsonl", retries=2)
    assert kit[0]["scores"] is None and kit[0]["unscored"] == judge.NEVER_PARSED
    assert "must be a rating from 1 to 5" in kit[0]["error"]


def test_official_settings_cannot_be_changed(official_prompts, tmp_path):
    fake = ScriptedChatModel(GOOD)
    for bad in ({"temperature": 0.7}, {"max_new_tokens": 512}, {"retries": 3},
                {"mode": "prob"}):
        with pytest.raises(LwError, match="protocol='kit'"):
            judge.judge(fake, _preds(1), tmp_path / "j.jsonl", protocol="official", **bad)
    # Passing the official values themselves is fine.
    judge.judge(fake, _preds(1), tmp_path / "j.jsonl", protocol="official", temperature=0.5,
                max_new_tokens=1024, retries=5)
    with pytest.raises(LwError, match="protocol='official'"):
        judge.judge(fake, _preds(1), tmp_path / "k.jsonl", official=True)
    with pytest.raises(LwError, match="'kit' or 'official'"):
        judge.judge(fake, _preds(1), tmp_path / "k.jsonl", protocol="paper")
    assert len(fake.calls) == 1


def test_a_file_of_one_protocol_is_not_resumed_by_another(official_prompts, tmp_path):
    judge.judge(ScriptedChatModel(GOOD), _preds(1), tmp_path / "j.jsonl")
    with pytest.raises(LwError, match="another path"):
        judge.judge(ScriptedChatModel(GOOD), _preds(1), tmp_path / "j.jsonl",
                    protocol="official")
    with pytest.raises(LwError, match="another path"):
        judge.judge(ScriptedChatModel(GOOD), _preds(1), tmp_path / "j.jsonl",
                    max_answer_chars=100)


def test_kit_protocol_retries_a_missing_dimension_and_never_fills_it(tmp_path):
    fake, seen = _by_topic({"r0": [MISSING_MIDDLE, GOOD], "r1": [MISSING_LAST] * 3})
    out = judge.judge(fake, _preds(2), tmp_path / "j.jsonl", retries=3)
    assert seen == {"r0": 2, "r1": 3} and out[0]["scores"] == {d: 4.0 for d in DIMS}
    assert out[1]["scores"] is None and "lacks 'Reading Experience'" in out[1]["error"]
    assert out[0]["protocol"] == "kit" and out[0]["prompt_version"].startswith("judge_en@")


@pytest.mark.parametrize("protocol", ["kit", "official"])
def test_whole_answers_are_judged_unless_capped(official_prompts, tmp_path, protocol):
    answer = "".join(f"w{i} " for i in range(30_000))  # ~200k characters, past the old cut
    fake = ScriptedChatModel(GOOD)
    out = judge.judge(fake, _preds(2, answer), tmp_path / "whole.jsonl", protocol=protocol)
    assert answer in fake.calls[0][0][0]["content"]
    assert out[0]["answer_cut"] is False and out[0]["judged_chars"] == len(answer)
    assert judge.coverage(out)["judge_answers_cut"] == 0
    fake = ScriptedChatModel(GOOD)
    preds = [*_preds(1, answer), *_preds(2, "short")[1:]]
    out = judge.judge(fake, preds, tmp_path / "cut.jsonl", protocol=protocol,
                      max_answer_chars=1000)
    prompt = fake.calls[0][0][0]["content"]
    assert answer[:1000] in prompt and answer[:1001] not in prompt
    assert (out[0]["answer_cut"], out[0]["judged_chars"], out[0]["answer_chars"]) == \
        (True, 1000, len(answer))
    assert out[1]["answer_cut"] is False and out[0]["max_answer_chars"] == 1000
    assert judge.coverage(out)["judge_answers_cut"] == 1
    with pytest.raises(LwError, match="max_answer_chars"):
        judge.judge(fake, preds, tmp_path / "x.jsonl", protocol=protocol, max_answer_chars=0)


def test_failed_predictions_are_reported_not_judged(tmp_path):
    preds = [*_preds(1), {**ROWS[1], "status": "failed", "error": "timeout"}]
    fake = ScriptedChatModel(GOOD)
    out = judge.judge(fake, preds, tmp_path / "j.jsonl")
    assert len(fake.calls) == 1 and out[1]["unscored"] == judge.NO_PREDICTION
    assert judge.coverage(out)["judge_unscored_reasons"] == {judge.NO_PREDICTION: 1}


def test_probability_judge_reports_an_answer_beyond_its_context(tmp_path, tiny):
    long = "word " * 9000  # past tiny-random's 8,192 positions
    preds = [*_preds(1, long), *_preds(2, "A short answer.")[1:]]
    out = judge.judge(tiny, preds, tmp_path / "j.jsonl", mode="prob")
    assert out[0]["scores"] is None and out[0]["unscored"] == judge.NO_FIT
    assert "max_answer_chars" in out[0]["error"] and out[1]["scores"] is not None
    capped = judge.judge(tiny, preds[:1], tmp_path / "k.jsonl", mode="prob",
                         max_answer_chars=2000)
    assert capped[0]["scores"] is not None and capped[0]["answer_cut"]


def test_coverage_agrees_with_the_results_table(official_prompts, tmp_path):
    fake, _ = _by_topic({"r0": [GOOD], "r1": [MISSING_LAST] * 5})
    out = judge.judge(fake, _preds(2, "x" * 50), tmp_path / "j.jsonl", protocol="official",
                      max_answer_chars=10)
    cov, res = judge.coverage(out), longbench.quality(out)
    for key in ("judge_coverage", "judge_answers_cut", "judge_protocol"):
        assert cov[key] == res[key], key
    assert cov["judge_answers_cut"] == 2 and cov["judge_protocol"] == ["official"]
    old = [{k: v for k, v in out[0].items() if k != "answer_cut"}]  # stored before cuts were
    assert judge.coverage(old)["judge_answers_cut"] is None  # recorded: unknown, not 0


@pytest.mark.parametrize("protocol", ["kit", "official"])
def test_an_outage_is_no_verdict_and_a_rerun_asks_again(official_prompts, tmp_path, protocol):
    """A judge that cannot be reached answers nothing: nothing is stored, coverage counts the
    items as pending (0%), and the run after the outage scores them all (100%)."""
    state = {"down": True, "calls": 0}

    def reply(conv, prefix):
        state["calls"] += 1
        return ConnectionError("503 server error") if state["down"] else GOOD  # an outage

    fake = ScriptedChatModel(reply)
    preds = [*_preds(3), {**ROWS[3], "status": "failed", "error": "timeout"}]
    with pytest.warns(UserWarning, match=r"no answer for 3 of 3 items.*503"):
        out = judge.judge(fake, preds, tmp_path / "j.jsonl", protocol=protocol, retries=None)
    assert state["calls"] == 3  # no try spent on an outage: the backend retried already
    assert not (tmp_path / "j.jsonl").exists()  # no verdict stored
    assert [j["unscored"] for j in out] == [judge.NO_ANSWER] * 3 + [judge.NO_PREDICTION]
    cov = judge.coverage(out)
    assert (cov["judge_coverage"], cov["judge_pending"], cov["judge_unscored"]) == (0.0, 3, 1)
    assert "503" in cov["judge_last_error"] and longbench.quality(out)["judge_pending"] == 3
    state["down"] = False
    again = judge.judge(fake, preds, tmp_path / "j.jsonl", protocol=protocol)
    assert state["calls"] == 6 and all(j["scores"] for j in again[:3])
    cov = judge.coverage(again)
    assert (cov["judge_coverage"], cov["judge_pending"]) == (75.0, 0)  # the failed prediction
    assert judge.coverage(again[:3])["judge_coverage"] == 100.0
    quiet = ScriptedChatModel("unused")
    judge.judge(quiet, preds, tmp_path / "j.jsonl", protocol=protocol)
    assert quiet.calls == []


def test_an_outage_after_unusable_replies_leaves_the_item_to_the_next_run(tmp_path):
    """Kit protocol: unusable replies use tries; an outage ends the item's asking without a
    verdict, and the next run goes on at the attempt the outage hit, the unusable reply before
    it still counted (it was stored as an attempt)."""
    script = iter(["garbage", ConnectionError("connection refused"), "still garbage", GOOD])
    fake = ScriptedChatModel(lambda conv, prefix: next(script))
    with pytest.warns(UserWarning, match="connection refused"):
        out = judge.judge(fake, _preds(1), tmp_path / "j.jsonl", retries=3)
    assert out[0]["pending"] and out[0]["attempts"] == 2
    again = judge.judge(fake, _preds(1), tmp_path / "j.jsonl", retries=3)
    assert again[0]["scores"] and again[0]["attempts"] == 3
    assert [c[2].seed for c in fake.calls] == [1, 2, 2, 3]
