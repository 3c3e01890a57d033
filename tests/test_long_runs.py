"""Long runs lose nothing: every finished answer and verdict is stored as it arrives, so a kill
loses only the requests in flight, and a rerun does the rest without redoing any.

A kill is simulated in process (a model or a step that raises after the k-th finished answer)
and done for real: ``kill -9`` of a process predicting through the OpenAI-compatible backend
while the test server (tests/fault_server.py) holds some requests unanswered.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lw import generation, judge, longbench, scoring, store, text
from lw.llm.fake import ScriptedChatModel

ROOT = Path(__file__).resolve().parent.parent
ROWS = [{"id": f"r{i}", "prompt": f"Write {100 * (i + 1)} words about topic {i}.",
         "length": 100 * (i + 1)} for i in range(8)]
GOOD = json.dumps(dict.fromkeys(scoring.DIMENSIONS, 4))


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs (not even ``except Exception``)."""


class OneByOne(ScriptedChatModel):
    """A fake whose ``stream`` hands over each reply the moment it is made, as the local and
    OpenAI-compatible backends do, and dies right after handing over the ``kill_after``-th."""

    def __init__(self, replies, kill_after=None):
        super().__init__(replies)
        self.kill_after = kill_after
        self.handed = 0

    def stream(self, requests, on_done, *, progress=False, errors="return", desc=None):
        queue = list(requests)
        while queue:
            r = queue.pop(0)
            out = self.generate([r.conversation], r.config, errors=errors, progress=False)[0]
            queue += on_done(r, out) or []
            self.handed += 1
            if self.handed == self.kill_after:
                raise Killed


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in store.jsonl_lines(path)]


def test_predict_stores_each_answer_as_it_ends(tmp_path):
    path = tmp_path / "p.jsonl"
    dying = OneByOne(lambda conv, prefix: "some words here", kill_after=3)
    with pytest.raises(Killed):
        generation.predict(dying, ROWS, path, max_new_tokens=50)
    stored = _lines(path)
    assert len(stored) == 3 and [r["status"] for r in stored] == ["done"] * 3
    asked = [conv[0]["content"] for conv, _, _ in dying.calls]
    assert [r["prompt"] for r in stored] == asked  # exactly the finished ones
    rest = OneByOne(lambda conv, prefix: "other words")
    preds = generation.predict(rest, ROWS, path, max_new_tokens=50)
    assert len(rest.calls) == 5 and not {c[0][0]["content"] for c in rest.calls} & set(asked)
    assert [p["id"] for p in preds] == [r["id"] for r in ROWS]
    assert len(_lines(path)) == 8 and all(p["status"] == "done" for p in preds)


def test_predict_on_the_local_engine_keeps_what_finished_before_a_crash(tmp_path, tiny,
                                                                        monkeypatch):
    """The real continuous-batching engine (4 rows at once): the run dies while storing the
    3rd answer to end; the 2 before it are on disk, and the rerun generates the other 6."""
    path = tmp_path / "p.jsonl"
    count, calls = text.count_words, {"n": 0}

    def dies_on_the_third(s):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed
        return count(s)

    monkeypatch.setattr(text, "count_words", dies_on_the_third)
    with pytest.raises(Killed):
        generation.predict(tiny, ROWS, path, max_new_tokens=6, progress=False)
    assert len(_lines(path)) == 2
    monkeypatch.setattr(text, "count_words", count)
    asked = []
    real_stream = tiny.stream

    def counting(requests, on_done, **kw):
        requests = list(requests)
        asked.extend(r.key for r in requests)
        return real_stream(requests, on_done, **kw)

    monkeypatch.setattr(tiny, "stream", counting)
    preds = generation.predict(tiny, ROWS, path, max_new_tokens=6, progress=False)
    first = {r["id"] for r in _lines(path)[:2]}
    assert len(asked) == 6 and not first & set(asked)
    assert len(_lines(path)) == 8 and all(p["status"] == "done" for p in preds)


@pytest.mark.parametrize("protocol", ["kit", "official"])
def test_the_judge_stores_each_verdict_as_it_is_reached(official_prompts, tmp_path, protocol):
    preds = [{**r, "status": "done", "response": "An answer."} for r in ROWS[:5]]
    path = tmp_path / "j.jsonl"
    # r0's first reply is unusable, so it is asked again after the others; the run dies as the
    # 4th reply is handed over: r1, r2, r3 have verdicts, r0 has its unusable first attempt.
    seen = []

    def reply(conv, prefix):
        seen.append(next(r["id"] for r in ROWS if r["prompt"] in conv[0]["content"]))
        return "not json" if seen.count("r0") == 1 and seen[-1] == "r0" else GOOD

    dying = OneByOne(reply, kill_after=4)
    with pytest.raises(Killed):
        judge.judge(dying, preds, path, protocol=protocol, progress=False)
    stored = [r["id"] for r in _lines(path)]
    assert stored == ["r0/attempt1", "r1", "r2", "r3"]
    rest = OneByOne(GOOD)
    out = judge.judge(rest, preds, path, protocol=protocol, progress=False)
    assert len(rest.calls) == 2 and all(j["scores"] for j in out)
    assert [c[2].seed for c in rest.calls] == [2, 1]  # r0 goes on at its 2nd attempt, r4 starts
    assert [j["attempts"] for j in out] == [2, 1, 1, 1, 1]
    assert sorted(r["id"] for r in _lines(path)) == sorted(["r0/attempt1"] +
                                                           [f"r{i}" for i in range(5)])


def _item(conv) -> str:
    return next(r["id"] for r in ROWS if r["prompt"] in conv[0]["content"])


def test_a_killed_judge_continues_each_item_at_its_next_attempt(tmp_path):
    """Every item needs 3 attempts (two unusable replies, then a verdict): 15 requests for 5
    items. Killed after 7, the rerun makes exactly the 8 missing ones, each at the attempt (and
    seed) where its item stopped, and an item that never parses still gets ``retries`` in all."""
    preds = [{**r, "status": "done", "response": "An answer."} for r in ROWS[:6]]
    path = tmp_path / "j.jsonl"

    def reply(model):
        def answer(conv, prefix):
            seed = model.calls[-1][2].seed
            return GOOD if seed >= 3 and _item(conv) != "r5" else "not json"
        return answer

    dying = OneByOne(None, kill_after=7)
    dying.replies = reply(dying)
    with pytest.raises(Killed):
        judge.judge(dying, preds, path, retries=3, progress=False)
    first = [(_item(c[0]), c[2].seed) for c in dying.calls]
    rest = OneByOne(None)
    rest.replies = reply(rest)
    out = judge.judge(rest, preds, path, retries=3, progress=False)
    second = [(_item(c[0]), c[2].seed) for c in rest.calls]
    assert len(first) == 7 and len(second) == 18 - 7  # 6 items x 3 attempts, none twice
    assert sorted(first + second) == sorted((f"r{i}", a) for i in range(6) for a in (1, 2, 3))
    assert [j["attempts"] for j in out] == [3] * 6
    assert [bool(j["scores"]) for j in out] == [True] * 5 + [False]
    assert out[5]["unscored"] == judge.NEVER_PARSED
    # The attempt records sit beside the verdicts; results and coverage read the verdicts only.
    cov = judge.coverage(out)
    assert (cov["judge_scored"], cov["judge_unscored"], cov["judge_pending"]) == (5, 1, 0)
    res = longbench.results([{**p, "words": 2} for p in preds], out)
    assert res["judge_coverage"] == pytest.approx(83.3) and res["S_q"] == 75
    assert len(_lines(path)) == 6 + 6 * 2  # 6 verdicts, 2 unusable attempts each
    quiet = OneByOne(GOOD)
    assert judge.judge(quiet, preds, path, retries=3, progress=False) == out
    assert quiet.calls == []


def test_the_official_counter_of_tries_survives_a_kill(official_prompts, tmp_path):
    """A reply lacking "Relevance" uses 2 of the official script's 5 tries: the item is dropped
    after its 3rd reply (6 tries). Killed after 2 replies, the rerun asks once, not 3 times."""
    preds = [{**ROWS[0], "status": "done", "response": "An answer."}]
    path = tmp_path / "j.jsonl"
    lacking = json.dumps({"Accuracy": 4})
    dying = OneByOne(lacking, kill_after=2)
    with pytest.raises(Killed):
        judge.judge(dying, preds, path, protocol="official", progress=False)
    assert [r["tries"] for r in _lines(path)] == [2, 4]
    rest = OneByOne(lacking)
    (out,) = judge.judge(rest, preds, path, protocol="official", progress=False)
    assert len(rest.calls) == 1 and rest.calls[0][2].seed == 3
    assert (out["unscored"], out["tries"], out["attempts"]) == (judge.DROPPED, 6, 3)


def test_stored_attempts_count_against_a_lowered_retry_limit(tmp_path):
    preds = [{**ROWS[0], "status": "done", "response": "An answer."}]
    path = tmp_path / "j.jsonl"
    with pytest.raises(Killed):
        judge.judge(OneByOne("not json", kill_after=2), preds, path, retries=5, progress=False)
    quiet = OneByOne(GOOD)
    (out,) = judge.judge(quiet, preds, path, retries=2, progress=False)
    assert quiet.calls == [] and (out["unscored"], out["attempts"]) == (judge.NEVER_PARSED, 2)


def test_judge_stores_made_before_attempt_records_still_load(tmp_path):
    """A file of verdicts only (as judges wrote before attempts were kept) resumes as it was."""
    preds = [{**r, "status": "done", "response": "An answer."} for r in ROWS[:3]]
    path = tmp_path / "j.jsonl"
    base = {"protocol": "kit", "mode": "text", "judge": {"spec": "fake"},
            "prompt_version": judge.prompts.load("judge", "en").tag, "max_answer_chars": None}
    path.write_text(json.dumps({"id": "r0", **base, "scores": json.loads(GOOD),
                                "unscored": None, "attempts": 4, "error": None}) + "\n" +
                    json.dumps({"id": "r1", **base, "scores": None, "attempts": 5,
                                "unscored": judge.NEVER_PARSED, "error": "no JSON"}) + "\n")
    fake = OneByOne(GOOD)
    out = judge.judge(fake, preds, path, progress=False)
    assert len(fake.calls) == 1 and fake.calls[0][2].seed == 1  # r2 only, from its 1st attempt
    assert [j["attempts"] for j in out] == [4, 5, 1]
    assert judge.coverage(out)["judge_unscored_reasons"] == {judge.NEVER_PARSED: 1}


def test_short_answers_store_per_answer_through_predict(tmp_path):
    """lw.data.short_answers goes through predict: a kill keeps the answers that ended."""
    from lw import data

    prompts = [{"id": f"s{i}", "prompt": f"Say something about {i}."} for i in range(4)]
    answer = " ".join(a + b for a in "pqrst" for b in "aeiouy")  # 30 words, none repeated
    dying = OneByOne(answer, kill_after=2)
    with pytest.raises(Killed):
        data.short_answers(dying, tmp_path, prompts=prompts, max_new_tokens=64)
    (path,) = tmp_path.glob("general-self-answers-*.jsonl")
    assert len(_lines(path)) == 2
    rest = OneByOne(answer)
    result = data.short_answers(rest, tmp_path, prompts=prompts, max_new_tokens=64)
    assert len(rest.calls) == 2 and len(result.kept) == 4


KILLED_RUN = """
import sys, lw
from lw import agentwrite, generation, longbench, ruler
rows = [{"id": f"k{i}", "prompt": f"Tell me about number {i}.", "length": 50} for i in range(8)]
model = lw.llm.load("openai:tiny-random", base_url=sys.argv[1], api_key=sys.argv[2],
                    concurrency=4, backoff=0.01, timeout=120)
generation.predict(model, rows, sys.argv[3], max_new_tokens=4, progress=False)
"""


def test_kill_9_of_predict_through_a_server_loses_only_requests_in_flight(server, tmp_path):
    """A real kill: 3 requests answered, the rest held by the server; kill -9 once the 3 are on
    disk. Before answers were stored per answer, such a kill lost all 3 (they waited for their
    chunk of 8)."""
    path = tmp_path / "p.jsonl"
    server.arm(["", "", ""] + ["delay"] * 10, delay=20)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, server.base_url, server.key,
                             str(path)], cwd=ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    try:
        deadline = time.time() + 90
        while time.time() < deadline and (not path.exists() or len(_lines(path)) < 3
                                           or server.seen() < 7):
            assert proc.poll() is None, "the predicting process ended early"
            time.sleep(0.1)
        time.sleep(0.5)  # nothing more can arrive: the requests in flight are held 20 s
        assert server.seen() == 7  # 3 answered, 4 in flight (concurrency 4), 1 queued
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    stored = _lines(path)
    assert len(stored) == 3 and all(r["status"] == "done" for r in stored)
    server.arm([])
    import lw

    model = lw.llm.load("openai:tiny-random", base_url=server.base_url, api_key=server.key,
                        concurrency=4, backoff=0.01)
    rows = [{"id": f"k{i}", "prompt": f"Tell me about number {i}.", "length": 50}
            for i in range(8)]
    preds = generation.predict(model, rows, path, max_new_tokens=4, progress=False)
    assert server.seen() == 5  # only what was not stored
    assert all(p["status"] == "done" for p in preds) and len(_lines(path)) == 8


KILLED_JUDGE = """
import sys, lw
from lw import judge
preds = [{"id": f"k{i}", "prompt": f"Tell me about number {i}.", "response": "An answer.",
          "status": "done"} for i in range(4)]
model = lw.llm.load("openai:tiny-random", base_url=sys.argv[1], api_key=sys.argv[2],
                    concurrency=2, backoff=0.01, timeout=120)
judge.judge(model, preds, sys.argv[3], retries=3, max_new_tokens=4, progress=False)
"""


def test_kill_9_of_the_judge_through_a_server_asks_only_the_missing_attempts(server, tmp_path):
    """tiny-random's replies never parse, so each of 4 items takes 3 attempts: 12 requests.
    Killed with 5 unusable replies on disk and 2 held by the server, the rerun sends the 7 still
    missing (before attempts were kept it sent all 12 again)."""
    path = tmp_path / "j.jsonl"
    server.arm([""] * 5 + ["delay"] * 10, delay=20)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_JUDGE, server.base_url, server.key,
                             str(path)], cwd=ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    try:
        deadline = time.time() + 90
        while time.time() < deadline and (not path.exists() or len(_lines(path)) < 5
                                           or server.seen() < 7):
            assert proc.poll() is None, "the judging process ended early"
            time.sleep(0.1)
        time.sleep(0.5)  # nothing more can arrive: the requests in flight are held 20 s
        assert server.seen() == 7  # 5 answered, 2 in flight (concurrency 2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(_lines(path)) == 5
    server.arm([])
    import lw

    model = lw.llm.load("openai:tiny-random", base_url=server.base_url, api_key=server.key,
                        concurrency=2, backoff=0.01)
    preds = [{"id": f"k{i}", "prompt": f"Tell me about number {i}.", "response": "An answer.",
              "status": "done"} for i in range(4)]
    out = judge.judge(model, preds, path, retries=3, max_new_tokens=4, progress=False)
    assert server.seen() == 12 - 5  # only the missing attempts
    assert [(j["unscored"], j["attempts"]) for j in out] == [(judge.NEVER_PARSED, 3)] * 4
    assert judge.coverage(out)["judge_unscored_reasons"] == {judge.NEVER_PARSED: 4}


def test_a_server_outage_is_pending_and_unusable_replies_are_verdicts(server, tmp_path):
    """Through the real OpenAI-compatible backend: 5xx past the client's retries leaves the
    items pending (nothing stored); once served, tiny-random's replies never parse, which is a
    verdict (unscored, stored, not asked again)."""
    import lw

    model = lw.llm.load("openai:tiny-random", base_url=server.base_url, api_key=server.key,
                        backoff=0.01, max_retries=1, concurrency=2)
    preds = [{**r, "status": "done", "response": "An answer."} for r in ROWS[:2]]
    server.arm(["503"] * 4)  # 2 items x (1 try + 1 retry)
    with pytest.warns(UserWarning, match="no answer for 2 of 2 items.*503"):
        out = judge.judge(model, preds, tmp_path / "j.jsonl", retries=2, max_new_tokens=8,
                          progress=False)
    assert judge.coverage(out)["judge_pending"] == 2 and not (tmp_path / "j.jsonl").exists()
    server.arm([])
    out = judge.judge(model, preds, tmp_path / "j.jsonl", retries=2, max_new_tokens=8,
                      progress=False)
    cov = judge.coverage(out)
    assert (cov["judge_pending"], cov["judge_unscored_reasons"]) == (0, {judge.NEVER_PARSED: 2})
    ids = sorted(r["id"] for r in _lines(tmp_path / "j.jsonl"))
    assert server.seen() == 4 and ids == ["r0", "r0/attempt1", "r1", "r1/attempt1"]
    judge.judge(model, preds, tmp_path / "j.jsonl", retries=2, max_new_tokens=8, progress=False)
    assert server.seen() == 4  # verdicts are not asked again
