"""The official pred.jsonl / judge.jsonl files (lw.longbench <-> THUDM/LongWriter's evaluation
scripts), and the vLLM server's "[INST]" requests (pred.py's prompt format on /v1/completions).

Scores are checked both ways: the kit's results from its own records against the kit's results
from the official files read back, and against the official totals computed here from the file
with the script's published formula (per dimension (mean - 1) * 25, total = mean of the six)."""

import json
import re
from types import SimpleNamespace

import pytest

from lw import generation, judge, longbench, scoring
from lw.errors import LwError
from lw.llm.fake import ScriptedChatModel
from lw.llm.vllm_backend import VLLMServerChatModel
from lw.paper import files as paper_files

ROWS = [
    {"id": "r0", "prompt": "Write a 100-word note to a neighbour.", "type": "Functional Writing",
     "length": 100, "language": "en", "bucket": "[0,500)"},
    {"id": "r1", "prompt": "写一篇800字的散文，关于秋天。", "type": "Literature and Arts",
     "length": 800, "language": "zh", "bucket": "[500,2k)"},
    {"id": "r2", "prompt": "Write a 2500-word guide to tide pools.", "type": "Popular Science",
     "length": 2500, "language": "en", "bucket": "[2k,4k)"},
    {"id": "r3", "prompt": "Write a 6000-word story about a lighthouse.", "type": "Literature and Arts",
     "length": 6000, "language": "en", "bucket": "[4k,20k]"},
    {"id": "r4", "prompt": "Write 300 words on rivers.", "type": "Popular Science",
     "length": 300, "language": "en", "bucket": "[0,500)"},
]
# English, Chinese, mixed (a glued "AI模型" and "abc123" count 0 words by the official rule).
ANSWERS = {"r0": "word " * 90, "r1": "秋" * 700 + " autumn leaves",
           "r2": "Tide pools, AI模型 and abc123 hold life. " * 200, "r3": "sea " * 1500,
           "r4": "river " * 300}
RATINGS = {"r0": [5, 4, 4, 5, 3, 4], "r1": [4, 4, 3, 4, 4, 3], "r2": [3, 2, 3, 3, 2, 3],
           "r3": [2, 3, 2, 2, 1, 2]}  # r4's judge never answers in JSON: unscored


def rated(rid: str) -> dict:
    return dict(zip(scoring.DIMENSIONS, RATINGS[rid], strict=True))


def _key(conv):
    return next(r["id"] for r in ROWS if r["prompt"] in conv[0]["content"])


def _judge_reply(conv, prefix):
    rid = _key(conv)
    if rid not in RATINGS:
        return "I cannot rate this."
    return "```json\n" + json.dumps({"Analysis": f"notes on {rid}",
                                     **rated(rid)}) + "\n```"


def official_count(text: str) -> int:
    """pred.py's count_words as published: Chinese characters plus English words."""
    return len(re.findall(r"[\u4e00-\u9fff]", text)) + len(re.findall(r"\b[a-zA-Z]+\b", text))


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(params=["kit", "official"])
def kit_run(request, tmp_path):
    """Predictions and judgements made by the kit, judged with either protocol (the official
    one on the stand-in judge prompt of ``official_prompts``)."""
    if request.param == "official":
        request.getfixturevalue("official_prompts")
    fake = ScriptedChatModel(lambda conv, prefix: ANSWERS[_key(conv)])
    preds = generation.predict(fake, ROWS, tmp_path / "p.jsonl", max_new_tokens=100_000,
                             progress=False)
    judged = judge.judge(ScriptedChatModel(_judge_reply), preds, tmp_path / "j.jsonl",
                         mode="text", protocol=request.param, progress=False)
    return preds, judged


def test_kit_files_score_the_same_both_ways_and_round_trip_byte_for_byte(tmp_path, kit_run):
    preds, judged = kit_run
    kit = longbench.results(preds, judged)
    assert kit["judge_coverage"] == 80.0  # r4 never scored

    pred_file, judge_file = tmp_path / "pred.jsonl", tmp_path / "judge.jsonl"
    assert paper_files.write_official_preds(preds, pred_file)["written"] == 5
    wrote = paper_files.write_official_judgements(judged, judge_file, preds)
    assert wrote["written"] == 4 and wrote["left_out"] == ["r4"]

    # pred.jsonl has pred.py's shape, its lengths by pred.py's rule.
    rows = lines(pred_file)
    assert [list(r) for r in rows] == [["prompt", "type", "length", "response_length",
                                        "response"]] * 5
    assert [r["response_length"] for r in rows] == [official_count(ANSWERS[r["id"]])
                                                     for r in ROWS]
    assert rows[2]["response_length"] == 200 * (5 + 2)  # "AI" and "abc123" count no word
    assert "秋" in pred_file.read_text(encoding="utf-8")  # ensure_ascii=False, as pred.py
    # eval_length.py's score from the file (the paper's formula) is the kit's S_l.
    s_l = [100 * max(0, 1 - (y / x - 1) / 3) if y > x else 100 * max(0, 1 - (x / y - 1) / 2)
           for x, y in ((r["length"], r["response_length"]) for r in rows)]
    assert kit["S_l"] == pytest.approx(sum(s_l) / len(s_l), abs=0.0051)  # the kit rounds to 2 decimals

    # judge.jsonl: scored rows with "scores", then the totals, which are eval_quality.py's
    # formula over the file and the kit's per-dimension scores and S_q.
    *items, totals = lines(judge_file)
    if judged[0]["protocol"] == "official":  # the judge's own dict, as eval_quality.py writes it
        assert [i["scores"]["Analysis"] for i in items] == [f"notes on r{k}" for k in range(4)]
    else:  # the kit keeps the six ratings
        assert [list(i["scores"]) for i in items] == [list(scoring.DIMENSIONS)] * 4
    for dim in scoring.DIMENSIONS:
        mean = sum(float(i["scores"][dim]) for i in items) / len(items)
        assert totals[dim] == pytest.approx((mean - 1) * 25)
        assert kit[f"q:{dim}"] == pytest.approx(totals[dim])
    assert totals["total"] == pytest.approx(sum(totals[d] for d in scoring.DIMENSIONS) / 6)
    assert kit["S_q"] == pytest.approx(totals["total"], abs=0.0051)  # the kit rounds to 2 decimals
    assert paper_files.official_totals(judge_file) == totals

    # Read back: the kit scores the official files exactly as it scored its own records.
    theirs = paper_files.read_official_preds(pred_file)
    judged_back = paper_files.read_official_judgements(judge_file, theirs)
    back = longbench.results(theirs, judged_back)
    same = ["n", "S", "S_l", "S_q", "judge_coverage", "mean_words", "failed",
            *[k for k in kit if k.startswith(("S_l[", "S_q[", "q:"))]]
    assert {k: back[k] for k in same} == {k: kit[k] for k in same}
    assert judged_back[4]["scores"] is None and judged_back[4]["unscored"] == judge.DROPPED
    assert back["judge_protocol"] == ["official"] and back["judge_answers_cut"] == 0

    # And written again, the files are the same bytes.
    paper_files.write_official_preds(theirs, tmp_path / "pred2.jsonl")
    paper_files.write_official_judgements(judged_back, tmp_path / "judge2.jsonl")
    assert (tmp_path / "pred2.jsonl").read_bytes() == pred_file.read_bytes()
    assert (tmp_path / "judge2.jsonl").read_bytes() == judge_file.read_bytes()


def test_ids_come_from_the_benchmark_rows_or_the_prompt(tmp_path, kit_run):
    preds, _ = kit_run
    paper_files.write_official_preds(preds, tmp_path / "pred.jsonl")
    with_rows = paper_files.read_official_preds(tmp_path / "pred.jsonl", rows=ROWS)
    assert [p["id"] for p in with_rows] == [r["id"] for r in ROWS]
    assert [p["bucket"] for p in with_rows] == [r["bucket"] for r in ROWS]
    bare = paper_files.read_official_preds(tmp_path / "pred.jsonl")
    assert bare[1]["id"] == paper_files.official_id(ROWS[1]["prompt"])
    assert bare[1]["language"] == "zh" and bare[1]["truncated"] is None
    with pytest.raises(LwError, match="not among the rows given"):
        paper_files.read_official_preds(tmp_path / "pred.jsonl", rows=ROWS[:2])
    moved = [{**r, "length": r["length"] + 1} for r in ROWS]
    with pytest.raises(LwError, match="asks for 101 words"):
        paper_files.read_official_preds(tmp_path / "pred.jsonl", rows=moved)


def test_a_judge_file_as_eval_quality_writes_it(tmp_path):
    """Shuffled order, a string rating, an "Analysis" object, a dropped item, the totals line."""
    preds = [{**r, "response": ANSWERS[r["id"]]} for r in ROWS]
    pred_file = tmp_path / "pred.jsonl"
    pred_file.write_text("".join(json.dumps(
        {k: p[k] for k in ("prompt", "type", "length")}
        | {"response_length": official_count(p["response"]), "response": p["response"]},
        ensure_ascii=False) + "\n" for p in preds), encoding="utf-8")
    scores = {"r3": {"Analysis": {"overall": "thin"}, "Relevance": 2, "Accuracy": "3",
                     "Coherence": 2, "Clarity": 2, "Breadth and Depth": 1,
                     "Reading Experience": 2},
              "r0": {"Analysis": "fine", **rated("r0")},
              "r1": {"Analysis": "good", **rated("r1")}}
    items = [{**{k: p[k] for k in ("prompt", "type", "length")},
              "response_length": official_count(p["response"]), "response": p["response"],
              "scores": scores[p["id"]]} for p in (preds[3], preds[0], preds[1])]
    totals = {d: (sum(float(s[d]) for s in scores.values()) / 3 - 1) * 25
              for d in scoring.DIMENSIONS}
    totals["total"] = sum(totals.values()) / 6
    judge_file = tmp_path / "judge.jsonl"
    judge_file.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n"
                                  for x in [*items, totals]), encoding="utf-8")

    theirs = paper_files.read_official_preds(pred_file, rows=ROWS)
    judged = paper_files.read_official_judgements(judge_file, theirs)
    assert [j["id"] for j in judged] == [r["id"] for r in ROWS]  # the predictions' order
    assert judged[3]["scores"]["Accuracy"] == 3.0 and judged[3]["raw_scores"] == scores["r3"]
    assert [j["unscored"] for j in judged[2:5:2]] == [judge.DROPPED] * 2
    res = longbench.results(theirs, judged)
    assert res["judge_coverage"] == 60.0
    assert res["S_q"] == pytest.approx(totals["total"], abs=0.0051)  # the kit rounds to 2 decimals
    assert res["q:Accuracy"] == pytest.approx(totals["Accuracy"])
    # Without the predictions the ids come from the prompts, in the file's order.
    alone = paper_files.read_official_judgements(judge_file)
    assert [j["prompt"] for j in alone] == [ROWS[3]["prompt"], ROWS[0]["prompt"],
                                            ROWS[1]["prompt"]]


def test_files_the_kit_will_not_guess_about(tmp_path, kit_run):
    preds, judged = kit_run
    failed = [*preds[:2], {**ROWS[2], "status": "failed", "error": "timeout"}]
    path = tmp_path / "pred.jsonl"
    with pytest.raises(LwError, match="1 predictions failed.*skip_failed=True"):
        paper_files.write_official_preds(failed, path)
    assert not path.exists()
    assert paper_files.write_official_preds(failed, path, skip_failed=True)["left_out"] == ["r2"]

    rows = lines(path)
    rows[0]["response_length"] += 3  # written by another counter
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    with pytest.raises(LwError, match="line 1: response_length 93.*recount=True"):
        paper_files.read_official_preds(path)
    assert paper_files.read_official_preds(path, recount=True)[0]["words"] == 90

    judge_file = tmp_path / "judge.jsonl"
    paper_files.write_official_judgements(judged, judge_file, preds)
    *items, totals = lines(judge_file)
    totals["total"] += 1
    judge_file.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n"
                                  for x in [*items, totals]))
    with pytest.raises(LwError, match="totals line disagrees"):
        paper_files.read_official_judgements(judge_file)
    with pytest.raises(LwError, match="no 'scores' object"):
        paper_files.read_official_judgements(path)
    with pytest.raises(LwError, match="no prediction to write"):
        paper_files.write_official_judgements(judged, tmp_path / "j.jsonl", preds[:1])
    with pytest.raises(LwError, match="no scored judgement"):
        paper_files.write_official_judgements(judged[4:], tmp_path / "j.jsonl", preds)


class _Completions:
    """Stands in for the openai client's ``completions`` route and records each request."""

    def __init__(self):
        self.requests = []

    def create(self, **kwargs):
        self.requests.append(kwargs)
        choice = SimpleNamespace(text=" and so on", finish_reason="length")
        return SimpleNamespace(choices=[choice],
                               usage=SimpleNamespace(prompt_tokens=9, completion_tokens=3))


def test_vllm_server_sends_the_inst_format_as_a_raw_completion():
    server = SimpleNamespace(model_name="THUDM/LongWriter-llama3.1-8b",
                             base_url="http://127.0.0.1:9/v1", api_key="k",
                             name="stand-in server", check_alive=lambda: None)
    model = VLLMServerChatModel(server, "vllm:THUDM/LongWriter-llama3.1-8b",
                                prompt_format="inst", check=False, max_retries=0)
    route = _Completions()
    model._client = SimpleNamespace(completions=route)  # no chat route: it must not be used
    out = model.generate(["Write 5000 words on tides."], prefix="Tides", max_new_tokens=3,
                         temperature=0.5, repetition_penalty=1.1)[0]
    sent = route.requests[0]
    assert sent["prompt"] == "[INST]Write 5000 words on tides.[/INST]Tides"
    assert sent["extra_body"] == {"add_special_tokens": True, "repetition_penalty": 1.1}
    assert (sent["max_tokens"], sent["temperature"]) == (3, 0.5)
    assert (out.text, out.finish_reason, out.completion_tokens) == (" and so on", "length", 3)
    assert model.info()["prompt_format"] == "inst"
    with pytest.raises(LwError, match="exactly one user message"):
        model.generate([[{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hi."}]])


class _RecordingServer:
    """Stands in for VLLMServer: keeps the engine arguments load_vllm would start vLLM with."""

    def __init__(self, model, **engine_args):
        self.model_name, self.name = model, "recording server"
        self.base_url, self.api_key = "http://127.0.0.1:9/v1", "k"
        self.engine_args = {"max_num_seqs": 4, **engine_args}

    def close(self):
        pass


def test_vllm_load_passes_trust_remote_code_as_its_flag(monkeypatch):
    from lw.llm import vllm_backend

    monkeypatch.setattr(vllm_backend, "VLLMServer", _RecordingServer)
    glm = vllm_backend.load_vllm("THUDM/LongWriter-glm4-9b", trust_remote_code=True,
                                 max_model_len=32768)
    assert glm.server.engine_args["trust_remote_code"] is True and glm.prompt_format == "chat"
    llama = vllm_backend.load_vllm("THUDM/LongWriter-llama3.1-8b", prompt_format="inst")
    assert "trust_remote_code" not in llama.server.engine_args  # vLLM's default: off
    assert llama.prompt_format == "inst"
    assert "--trust-remote-code" in vllm_backend.vllm_command("m", 1, trust_remote_code=True)
    with pytest.raises(LwError, match="prompt_format must be one of"):
        vllm_backend.load_vllm("m", prompt_format="llama3")
