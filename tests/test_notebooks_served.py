"""Every notebook at ``mock`` with a served model: ``MODEL``/``MODELS`` and ``JUDGE`` set to an
``openai:`` spec against llama-cpp-python's OpenAI-compatible server (a server nobody here wrote,
serving the embedded SmolLM2 GGUF on 127.0.0.1), executed as a user would, through ``lw.run``
and papermill.

Notebooks 05 and 06 fine-tune their ``MODEL``, which needs weights: they take the served model
as their judge (05) or not at all (06), and a served ``MODEL`` is refused before any work.

Run by ``make test-server`` (``.ci/run``); skipped where llama-cpp-python is not installed,
unless ``LW_REQUIRE_LLAMACPP=1``.
"""

import json
import os
from pathlib import Path

import pytest
from test_llamacpp_server import ALIAS, llamacpp  # noqa: F401  (the server fixture)

import lw
from lw.errors import LwError

pytestmark = pytest.mark.slow
SPEC = f"openai:{ALIAS}"
PARAMETERS = {
    "00": {"MODEL": SPEC},
    "01": {"MODELS": [SPEC]},
    "02": {"MODEL": SPEC},
    "03": {"MODELS": [SPEC], "JUDGE": SPEC},
    "04": {"MODEL": SPEC},
    "05": {"JUDGE": SPEC},
    # SmolLM2 behind the server writes 04's answers far shorter than tiny-random's budget-long
    # ones, so 06's caps sit under them (design "cut" needs answers longer than its largest cap);
    # at mock's 16 tokens and 2 prompts the word counts came out too alike for the Spearman
    # bootstrap (6% of resamples without variation: refused), so 4 prompts of 48 tokens
    "06": {"CAPS": [5, 10], "N_PROMPTS": 4, "MAX_NEW_TOKENS": 48},
}


def _records(folder: Path, pattern: str) -> list[dict]:
    out = []
    for path in sorted(folder.glob(pattern)):
        out += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return out


def test_every_notebook_runs_through_a_served_model(llamacpp, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OPENAI_BASE_URL", llamacpp.base_url)  # the kernels inherit these
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    monkeypatch.setenv("LW_RUN_DIR", str(tmp_path))  # lw.run sets both; restored afterwards
    monkeypatch.setenv("LW_SIZE", "mock")
    for number, params in PARAMETERS.items():
        seconds = lw.run.run("mock", only=[number], out=tmp_path, parameters=params)
        assert isinstance(seconds["seconds"].get(next(iter(seconds["seconds"]))), (int, float))

    # Every answer of 01 and 03 came from the server, and was stored whole.
    for folder in ("ruler", "longbench_write"):
        preds = [r for r in _records(tmp_path / folder, "preds*.jsonl") if "id" in r]
        assert preds and all(r["status"] == "done" for r in preds), folder
        assert {r["model"]["spec"] for r in preds} == {SPEC}
        assert {r["model"]["server_kind"] for r in preds} == {"llama-cpp-python"}
    # The judges of 03 and 05 were the served model, and each item was judged or counted.
    for folder in ("longbench_write", "finetune_eval"):
        judged = [r for r in _records(tmp_path / folder, "judge*.jsonl") if "id" in r]
        assert judged, folder
        assert all(SPEC in json.dumps(r.get("judge") or r.get("model") or "") for r in judged
                   if "scores" in r), folder
    # AgentWrite (02) and the data (04) were written by the server: chat-scaffolded plans.
    written = [r for r in _records(tmp_path / "agentwrite", "*.jsonl") if r.get("plan_mode")]
    assert written and {r["plan_mode"] for r in written} <= {"scaffold_chat", "free"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["seconds"]) >= {"00_quickstart", "06_controlled_experiment"}


def test_a_served_model_cannot_be_the_model_05_and_06_train(tmp_path, monkeypatch):
    """Refused in the first cells, before any data is read or model loaded, saying why."""
    monkeypatch.setenv("LW_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("LW_SIZE", "mock")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    for number in ("05", "06"):
        with pytest.raises(LwError, match=r"cannot fine-tune 'openai:.*needs its weights"):
            lw.run.run("mock", only=[number], out=tmp_path, parameters={"MODEL": SPEC})
    assert not (tmp_path / "sft").exists() and not (tmp_path / "controlled").exists()
    assert os.environ["LW_SIZE"] == "mock"
