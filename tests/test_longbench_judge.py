"""Predictions, results tables, the judge (retries, coverage, official switch, probabilities)."""

import json

import pytest

from lw import agentwrite, generation, judge, longbench, ruler, scoring, store
from lw.errors import LwError
from lw.llm.fake import ScriptedChatModel

ROWS = [{"id": f"r{i}", "prompt": f"Write {n} words about topic {i}.", "length": n,
         "language": "en"} for i, n in enumerate([100, 800, 2500, 6000])]
GOOD = json.dumps({d: 4 for d in scoring.DIMENSIONS})


def test_predict_is_resumable_and_flags_truncation(tmp_path):
    fake = ScriptedChatModel(lambda conv, prefix: "word " * 50)
    preds = generation.predict(fake, ROWS[:2], tmp_path / "p.jsonl", max_new_tokens=20)
    assert all(p["truncated"] and p["words"] == 20 for p in preds)
    assert preds[0]["settings"]["temperature"] == 0.5  # the paper's default
    again = ScriptedChatModel("unused")
    preds2 = generation.predict(again, ROWS[:3], tmp_path / "p.jsonl", max_new_tokens=100)
    assert len(again.calls) == 1 and preds2[:2] == preds  # only the new row was generated
    assert not preds2[2]["truncated"]


def test_failed_predictions_are_returned_not_stored(tmp_path):
    fake = ScriptedChatModel(lambda conv, prefix: ConnectionError("down")
                             if "topic 1" in conv[0]["content"] else "fine words")
    with pytest.warns(UserWarning, match=r"1 of 2 requests to fake failed.*1 got no answer "
                                         r"\(transport.*down.*rerun with the same path"):
        preds = generation.predict(fake, ROWS[:2], tmp_path / "p.jsonl", max_new_tokens=10)
    assert [p["status"] for p in preds] == ["done", "failed"] and "down" in preds[1]["error"]
    fixed = ScriptedChatModel("fine words")
    assert generation.predict(fixed, ROWS[:2], tmp_path / "p.jsonl", 10)[1]["status"] == "done"
    assert len(fixed.calls) == 1  # only the failed row was asked again


def test_a_refused_prediction_says_what_to_change_not_rerun(tmp_path):
    """A request the backend refused fails again unchanged: the warning names what to change."""
    fake = ScriptedChatModel(lambda conv, prefix: RuntimeError("400 from server: too long")
                             if "topic 1" in conv[0]["content"] else ConnectionError("reset"))
    with pytest.warns(UserWarning) as caught:
        preds = generation.predict(fake, ROWS[:3], tmp_path / "p.jsonl", max_new_tokens=10)
    (message,) = [str(w.message) for w in caught if "predict:" in str(w.message)]
    transport, refused = message.split("; 1 were refused")
    assert "2 got no answer (transport" in transport and "rerun with the same path" in transport
    assert "400 from server: too long" in refused and "shorten the prompt" in refused
    assert "max_new_tokens" in refused and "rerun" not in refused
    assert [p["status"] for p in preds] == ["failed"] * 3 and not (tmp_path / "p.jsonl").exists()


def test_results_per_bucket_and_overall(tmp_path):
    answers = {"r0": 100, "r1": 400, "r2": 2500, "r3": 0}
    fake = ScriptedChatModel(lambda conv, prefix: "word " * answers[
        next(r["id"] for r in ROWS if r["prompt"] == conv[0]["content"])])
    preds = generation.predict(fake, ROWS, tmp_path / "p.jsonl", max_new_tokens=10_000)
    judged = judge.judge(ScriptedChatModel(GOOD), preds, tmp_path / "j.jsonl")
    res = longbench.results(preds, judged)
    assert res["S_l[0,500)"] == 100 and res["S_l[500,2k)"] == 50 and res["S_l[4k,20k]"] == 0
    assert res["S_l"] == pytest.approx((100 + 50 + 100 + 0) / 4)
    assert res["S_q"] == 75 and res["judge_coverage"] == 100.0
    assert res["S"] == pytest.approx((res["S_l"] + 75) / 2)
    assert longbench.results(preds)["S"] is None  # no judge, no overall score


def test_judge_retries_then_counts_what_never_parsed(tmp_path):
    preds = [{**r, "status": "done", "response": "text"} for r in ROWS[:3]]
    replies = {"r0": ["garbage", GOOD], "r1": ["nope"] * 9, "r2": [GOOD]}
    seen = {k: 0 for k in replies}

    def reply(conv, prefix):
        key = next(r["id"] for r in ROWS if r["prompt"] in conv[0]["content"])
        seen[key] += 1
        return replies[key][min(seen[key], len(replies[key])) - 1]

    out = judge.judge(ScriptedChatModel(reply), preds, tmp_path / "j.jsonl", retries=5)
    assert [j["attempts"] for j in out] == [2, 5, 1]
    assert out[1]["scores"] is None and "no JSON object" in out[1]["error"]
    assert seen == {"r0": 2, "r1": 5, "r2": 1}
    res = longbench.quality(out)
    assert res["judge_coverage"] == pytest.approx(66.7) and res["S_q"] == 75
    # Resumed: nothing is judged again.
    quiet = ScriptedChatModel("unused")
    judge.judge(quiet, preds, tmp_path / "j.jsonl")
    assert quiet.calls == []


def test_a_refused_judge_request_is_unscored_with_advice_and_an_outage_pending(tmp_path):
    preds = [{**r, "status": "done", "response": "text"} for r in ROWS[:3]]

    def reply(conv, prefix):
        prompt = conv[0]["content"]
        if "topic 0" in prompt:
            return RuntimeError("400 from server: maximum context length exceeded")
        return TimeoutError("read timed out") if "topic 1" in prompt else GOOD

    with pytest.warns(UserWarning) as caught:
        out = judge.judge(ScriptedChatModel(reply), preds, tmp_path / "j.jsonl")
    messages = [str(w.message) for w in caught]
    refused = next(m for m in messages if "refused" in m)
    assert "1 of 3 items" in refused and "maximum context length" in refused
    assert "max_answer_chars" in refused and "rerun judge() with the same path" not in refused
    assert any("no answer for 1 of 3" in m and "rerun judge() with the same path" in m
               for m in messages)
    assert [j["unscored"] for j in out] == [judge.REFUSED, judge.NO_ANSWER, None]
    assert [j.get("pending") for j in out] == [False, True, None]
    cov = judge.coverage(out)
    assert cov["judge_pending"] == 1 and cov["judge_unscored_reasons"] == {judge.REFUSED: 1}
    # Neither is a verdict: only r2 is stored, and a rerun asks the other two again.
    assert [r["id"] for r in map(json.loads, store.jsonl_lines(tmp_path / "j.jsonl"))] == ["r2"]
    again = ScriptedChatModel(GOOD)
    assert all(j["scores"] for j in judge.judge(again, preds, tmp_path / "j.jsonl"))
    assert len(again.calls) == 2


def test_a_missing_dimension_is_never_filled_and_the_old_switch_points_to_protocol(tmp_path):
    """The kit once filled a missing dimension with 3 (``official=True``); the official script
    asks again instead (tests/test_judge_official.py), and the kit never fills one."""
    preds = [{**r, "status": "done", "response": "text"} for r in ROWS[:2]]
    partial = json.dumps({"Relevance": 5, "Accuracy": 5})

    def reply(conv, prefix):
        return partial if "topic 0" in conv[0]["content"] else "no json"

    strict = judge.judge(ScriptedChatModel(reply), preds, tmp_path / "k.jsonl", retries=2)
    assert [j["scores"] for j in strict] == [None, None]
    with pytest.raises(LwError, match="protocol"):
        judge.judge(ScriptedChatModel(reply), preds, tmp_path / "j.jsonl", official=True)


def test_the_judge_prompt_carries_request_and_response(tmp_path):
    fake = ScriptedChatModel(GOOD)
    judge.judge(fake, [{**ROWS[0], "status": "done", "response": "THE ANSWER"}],
                tmp_path / "j.jsonl")
    prompt = fake.calls[0][0][0]["content"]
    assert ROWS[0]["prompt"] in prompt and "THE ANSWER" in prompt
    assert "do not reward or punish it for being long" in prompt
    assert all(d in prompt for d in scoring.DIMENSIONS)


def test_probability_judge_on_tiny_random(tmp_path, tiny):
    preds = [{**r, "status": "done", "response": "Some text about it."} for r in ROWS[:2]]
    out = judge.judge(tiny, preds, tmp_path / "j.jsonl", mode="prob")
    for j in out:
        assert j["mode"] == "prob" and set(j["scores"]) == set(scoring.DIMENSIONS)
        assert all(1 <= v <= 5 for v in j["scores"].values())
    assert longbench.quality(out)["judge_coverage"] == 100.0


def test_probability_judge_needs_a_local_model(tmp_path):
    with pytest.raises(LwError, match="mode='text'"):
        judge.judge(ScriptedChatModel("x"), [], tmp_path / "j.jsonl", mode="prob")


def test_ruler_table_and_max_length():
    preds = [{"id": str(i), "length": n, "words": w, "truncated": w > 900, "repetition": 0.1}
             for i, (n, w) in enumerate([(1000, 800), (1000, 1000), (5000, 700), (5000, 600)])]
    table = ruler.ruler_table(preds)
    assert table["length"].tolist() == [1000, 5000]
    assert table["mean_words"].tolist() == [900, 650] and table["max_words"].tolist() == [1000, 700]
    assert table["truncated"].tolist() == [1, 0]
    assert ruler.max_output_length(preds) == 1000


def test_results_are_saved_with_their_versions(tmp_path, monkeypatch):
    monkeypatch.setenv("LW_HOME", str(tmp_path))
    table = longbench.results_table({"m": {"S": 50.0, "S_l": 60.0, "S_q": 40.0}}, label="run")
    csv = longbench.save_results(table, "lbw-test", "longbench_write_en", "judge_en@1")
    meta = json.loads(csv.with_suffix(".json").read_text())
    assert meta["scorer_version"] == scoring.VERSION and meta["judge_prompt"] == "judge_en@1"
    assert meta["benchmark_sha256"].startswith("8780092776")
    assert meta["rows"][0]["S"] == 50.0 and csv.read_text().startswith("model,source,S")


def test_agentwrite_predictions_have_the_prediction_shape(tmp_path):
    def reply(conv, prefix):
        if "planning a long piece" in conv[-1]["content"]:
            return ("Paragraph 1 - Main Point: A - Word Count: 300 words\n"
                    "Paragraph 2 - Main Point: B - Word Count: 300 words")
        return "alpha beta gamma delta"

    preds = agentwrite.predict_agentwrite(ScriptedChatModel(reply), ROWS[1:2],
                                        tmp_path / "a.jsonl")
    assert preds[0]["words"] == 8 and preds[0]["status"] == "done"
    assert preds[0]["model"]["method"] == "agentwrite" and not preds[0]["truncated"]
    assert longbench.results(preds)["n"] == 1


def test_run_model_resumes_by_spec_and_settings(tmp_path):
    model, preds = longbench.run_model("fake:three little words", ROWS[:2], tmp_path,
                                      max_new_tokens=50)
    assert [p["words"] for p in preds] == [3, 3]
    again, preds2 = longbench.run_model("fake:other words", ROWS[:2], tmp_path, max_new_tokens=50)
    assert [p["words"] for p in preds2] == [2, 2]  # another spec: another file
    _, aw = longbench.run_model("agentwrite:fake:a b c", ROWS[:1], tmp_path, max_new_tokens=50)
    assert aw[0]["model"]["method"] == "agentwrite" and aw[0]["words"] > 0


def test_paired_words_line_up_prompts_and_count_the_longer_ones():
    base = [{"id": "a", "length": 2000, "words": 300}, {"id": "b", "length": 5000, "words": 900},
            {"id": "c", "length": 3000, "words": 50}]
    tuned = [{"id": "c", "length": 3000, "words": 60}, {"id": "a", "length": 2000, "words": 700},
             {"id": "b", "length": 5000, "words": 100}]
    table, longer = longbench.paired_words({"base": base, "SFT": tuned})
    assert list(table.index) == ["a", "b", "c"]
    assert table.loc["a", "SFT"] == 700 and table.loc["b", "length"] == 5000
    assert longer == {"SFT": 2}
    with pytest.raises(LwError, match="base"):
        longbench.paired_words({"SFT": tuned})


def test_results_count_the_answers_the_judge_saw_cut(tmp_path):
    preds = [{**r, "status": "done", "response": "word " * (5 * (i + 1))}
             for i, r in enumerate(ROWS)]  # 25, 50, 75 and 100 characters
    judged = judge.judge(ScriptedChatModel(GOOD), preds, tmp_path / "j.jsonl",
                         max_answer_chars=60)
    res = longbench.results(preds, judged)
    assert res["judge_answers_cut"] == 2 and res["judge_coverage"] == 100.0
    assert res["judge_protocol"] == ["kit"]
    whole = judge.judge(ScriptedChatModel(GOOD), preds, tmp_path / "k.jsonl")
    assert longbench.results(preds, whole)["judge_answers_cut"] == 0
    # Judgements stored before the judge recorded cuts cannot say how many it cut.
    old = [{k: v for k, v in j.items() if k != "answer_cut"} for j in whole]
    assert longbench.results(preds, old)["judge_answers_cut"] is None
    assert longbench.results(preds)["judge_answers_cut"] is None


def test_run_model_loads_with_its_options_and_files_by_them(tmp_path):
    settings = dict(max_new_tokens=2, temperature=0.0)
    plain, _ = longbench.run_model("tiny-random", ROWS[:1], tmp_path, 2, **settings)
    inst, preds = longbench.run_model("tiny-random", ROWS[:1], tmp_path, 2,
                                     load_options={"prompt_format": "inst"}, **settings)
    assert (plain.prompt_format, inst.prompt_format) == ("chat", "inst")
    assert preds[0]["model"]["prompt_format"] == "inst"
    # Without options the file is the one runs made before options existed (they resume).
    old = store.keyed_path(tmp_path, "preds", model="tiny-random", **settings)
    assert old.exists() and len(list(tmp_path.glob("preds-*.jsonl"))) == 2


def test_rows_missing_a_field_are_refused_before_any_request(tmp_path):
    fake = ScriptedChatModel("words")
    with pytest.raises(LwError, match=r"predict\[1\] \(id 'r1'\) has no 'prompt'"):
        generation.predict(fake, [ROWS[0], {"id": "r1", "length": 50}], tmp_path / "p.jsonl", 10)
    with pytest.raises(LwError, match=r"predict\[0\] has no 'id'"):
        generation.predict(fake, [{"prompt": "Write.", "length": 50}], tmp_path / "p.jsonl", 10)
    with pytest.raises(LwError, match=r"predict\[0\] \(id 'r0'\): 'length'.*got 0"):
        generation.predict(fake, [{**ROWS[0], "length": 0}], tmp_path / "p.jsonl", 10)
    with pytest.raises(LwError, match=r"judge\[0\] \(id 'r0'\) has no 'prompt'"):
        judge.judge(fake, [{"id": "r0", "response": "x"}], tmp_path / "j.jsonl")
    assert fake.calls == []
    preds = [{**r, "status": "done", "response": "w", "words": 1} for r in ROWS[:2]]
    with pytest.raises(LwError, match=r"predictions\[1\] \(id 'r1'\) has no 'length'"):
        longbench.results([preds[0], {k: v for k, v in preds[1].items() if k != "length"}])
    with pytest.raises(LwError, match=r"predictions\[0\] \(id 'r0'\): 'length'.*got -3"):
        longbench.results([{**preds[0], "length": -3}])
    # Short prompts without a length (lw.data.short_answers) are fine for predict.
    assert generation.predict(fake, [{"id": "s", "prompt": "Hi."}], tmp_path / "s.jsonl",
                            10)[0]["status"] == "done"
