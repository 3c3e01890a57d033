"""Every paper stage has a command, ``python -m lw.<stage>``, over the function its notebook
calls: each prints its help, and the generation stages run end to end at ``mock``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("ruler", "agentwrite", "longbench", "data", "sft", "controlled")


def _run(args, tmp_path, timeout=600):
    env = {**os.environ, "LW_SIZE": "mock", "LW_RUN_DIR": str(tmp_path / "run"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-W", "ignore", "-m", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_a_command_with_help(stage, tmp_path):
    proc = _run([f"lw.{stage}", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: python -m lw.{stage}"), proc.stdout[:300]


@pytest.mark.slow
def test_ruler_and_longbench_commands_answer_score_and_resume(tmp_path):
    ruler = _run(["lw.ruler", "--prompts", "2", "--max-new-tokens", "8"], tmp_path)
    assert ruler.returncode == 0, ruler.stderr[-3000:]
    assert "tiny-random · maximum output length:" in ruler.stdout
    assert "mean_words" in ruler.stdout and "truncated" in ruler.stdout
    stored = list((tmp_path / "run" / "ruler").glob("preds-*.jsonl"))
    assert len(stored) == 1 and len(stored[0].read_text().splitlines()) == 2

    lbw = _run(["lw.longbench", "--prompts", "2", "--max-new-tokens", "8"], tmp_path)
    assert lbw.returncode == 0, lbw.stderr[-3000:]
    header = next(line for line in lbw.stdout.splitlines() if line.lstrip().startswith("model"))
    assert header.split()[:4] == ["model", "S", "S_l", "S_q"]
    assert "tiny-random" in lbw.stdout
    # A rerun with the same settings resumes: no new answer file, the same table.
    again = _run(["lw.longbench", "--prompts", "2", "--max-new-tokens", "8"], tmp_path)
    assert again.returncode == 0 and again.stdout.splitlines()[-2:] == lbw.stdout.splitlines()[-2:]
    assert len(list((tmp_path / "run" / "longbench_write").glob("preds-*.jsonl"))) == 1


@pytest.mark.slow
def test_agentwrite_and_data_commands_write_and_report(tmp_path):
    aw = _run(["lw.agentwrite", "--items", "2"], tmp_path)
    assert aw.returncode == 0, aw.stderr[-3000:]
    assert "sequential vs direct:" in aw.stdout and "parallel vs direct:" in aw.stdout
    assert {p.name.split("-")[0] for p in (tmp_path / "run" / "agentwrite").glob("*.jsonl")} \
        == {"direct", "sequential", "parallel"}
    # The profile's values given by hand name the same settings: the files resume, none is added.
    files = sorted((tmp_path / "run" / "agentwrite").glob("*.jsonl"))
    again = _run(["lw.agentwrite", "--items", "2", "--temperature", "0.8", "--retry-short", "1"],
                 tmp_path)
    assert again.returncode == 0 and sorted((tmp_path / "run" / "agentwrite").glob("*.jsonl")) == files
    built = _run(["lw.data", "--items", "2"], tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "kept" in built.stdout and (tmp_path / "run" / "data" / "longwriter-kit.md").exists()
