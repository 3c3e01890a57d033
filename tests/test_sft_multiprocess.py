"""lw.sft under ``accelerate launch`` with 2 CPU processes (gloo): the data split across ranks,
files written by rank 0 alone, tokenization done once, ``processes`` in the record, and an SFT and
a DPO run killed after a checkpoint resuming from it.

The launch uses ``recipes/accelerate_configs/multi_cpu.yaml`` (torchrun's launcher, with
``ACCELERATE_USE_CPU=1``): accelerate's MULTI_CPU type needs mpirun and otherwise starts a single
process (see that file).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "recipes" / "accelerate_configs" / "multi_cpu.yaml"
RECIPE = ROOT / "recipes" / "smollm2-135m" / "sft" / "config_full_cpu.yaml"

def _can_launch() -> str | None:
    """Why 2 CPU processes cannot be launched here, or None."""
    try:
        import accelerate  # noqa: F401
        import torch.distributed as dist
    except ImportError as exc:
        return f"accelerate or torch.distributed missing ({exc})"
    if not Path("/proc").is_dir():
        return "the test finds the launched ranks (to kill them) through /proc"
    if not (dist.is_available() and dist.is_gloo_available()):
        return "torch.distributed has no gloo backend, which CPU processes talk over"
    return None


if (why := _can_launch()) is not None:
    pytest.skip(f"cannot launch 2 CPU processes: {why}", allow_module_level=True)


def _free_port() -> int:
    # Other runs on the machine (or a killed launch's listener) may hold accelerate's default.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cpu: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               LW_SIZE="mock", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    else:
        env.pop("ACCELERATE_USE_CPU", None)
    return env


def _launch(args: list[str], log: Path, cpu: bool = True) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG),
           "--main_process_port", str(_free_port()), "-m", "lw.sft", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(cpu), stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc): torchrun starts each rank in a session of its
    own, so killing the launcher's process group would leave the ranks training."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def _kill(proc: subprocess.Popen) -> list[int]:
    """SIGKILL the launch and every rank it started, as a crash or an OOM kill would; returns
    their ids."""
    pids = _tree(proc.pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    return pids


def _alive(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False


def _wait(proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        pytest.fail(f"launch still running after {timeout} s:\n{log.read_text()[-3000:]}")
    return log.read_text()


def _launch_and_kill_after_a_checkpoint(args: list[str], out: Path, log: Path):
    """Launch, then SIGKILL the launcher and both ranks once a checkpoint is complete; returns
    the killed process ids (none left alive) and the launch's output."""
    started = time.monotonic()
    proc = _launch(args, log)
    while proc.poll() is None and not list(out.glob("checkpoint-*/trainer_state.json")):
        assert time.monotonic() - started < 240, log.read_text()[-3000:]
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before it could be killed:\n{log.read_text()[-3000:]}"
    killed = _kill(proc)
    time.sleep(0.5)
    assert not [pid for pid in killed if _alive(pid)]
    return killed, log.read_text()


DATA = [{"messages": [
    {"role": "user", "content": f"Question {i}: tell me about item {i}."},
    {"role": "assistant", "content": "Item facts: it is small, blue and useful. " * (1 + i % 3)}]}
    for i in range(8)]


def _sft_args(tmp_path: Path) -> list[str]:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in DATA))
    sets = {"model": "tiny-random", "output_dir": str(tmp_path / "out"), "max_length": 256,
            "packing": False, "num_train_epochs": 3, "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": 1, "learning_rate": 1e-3, "warmup_steps": 0,
            "save_steps": 1, "save_total_limit": 1, "logging_steps": 1, "bf16": False}
    args = [str(RECIPE), "--data", str(data)]
    for key, value in sets.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return args


@pytest.mark.slow
def test_two_cpu_processes_split_the_data_write_once_and_resume_after_a_kill(tmp_path):
    out = tmp_path / "out"
    args = _sft_args(tmp_path)

    killed, first = _launch_and_kill_after_a_checkpoint(args, out, tmp_path / "launch1.log")
    assert len(killed) >= 3  # the launcher, torchrun and the 2 ranks
    assert not (out / "final").exists()
    # Rank 0 tokenized, rank 1 waited and loaded what it stored; nobody tokenized twice.
    assert first.count("tokenized 8 conversations") == 1, first[-3000:]
    assert first.count("rank 1 loaded the tokens") == 1, first[-3000:]
    assert "rank 0 loaded" not in first

    # Second launch: resumes from the last complete checkpoint and finishes.
    log2 = tmp_path / "launch2.log"
    proc = _launch(args, log2)
    second = _wait(proc, log2)
    assert proc.returncode == 0, second[-3000:]
    record = json.loads((out / "final" / "lw_train.json").read_text())
    stats = record["stats"]
    assert stats["processes"] == 2
    resumed = int(Path(stats["resumed_from"]).name.split("-")[1])
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    # 8 rows, one per process per step: each rank takes half of them, 4 steps an epoch.
    assert state["max_steps"] == state["global_step"] == 12 == 3 * 8 // 2
    epoch_at = {h["step"]: h["epoch"] for h in state["log_history"] if "loss" in h}
    assert epoch_at[4] == pytest.approx(1.0)
    assert 1 <= resumed < 12
    steps = [h["step"] for h in record["log_history"] if "loss" in h]
    assert steps == list(range(1, 13))  # the resumed run continued the count, no step twice
    # Rank 0 alone wrote: one checkpoint (save_total_limit 1), one marker, no temporary or
    # leftover token files, a record that parses (above), and the "removed" notes at most once.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-12", "final", "lw_run.json"]
    assert not list(out.rglob("*.tmp"))
    assert second.count("was not saved to the end") <= 1
    # Both ranks print the stats, rank 1 reading them from rank 0's record (whole lines only:
    # the two ranks' output interleaves).
    assert second.count('"processes": 2,') == 2
    assert second.count(f'"resumed_from": "{stats["resumed_from"]}",') == 2


def test_a_launch_whose_processes_did_not_join_is_refused(monkeypatch):
    # Ranks started as 2 that each set up a world of 1 would each train on all the data and
    # write the same files: refused before anything is tokenized or written.
    from types import SimpleNamespace

    from lw.errors import LwError
    from lw.sft.train import _check_ranks

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LwError, match="launched as 2 processes, but training sees 1"):
        _check_ranks(SimpleNamespace(world_size=1, process_index=0))
    _check_ranks(SimpleNamespace(world_size=2, process_index=1))
    # accelerate's MULTI_CPU launch without mpirun: asked for 2, it starts one plain process.
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    with pytest.warns(UserWarning, match="started one"):
        _check_ranks(SimpleNamespace(world_size=1, process_index=0))


DPO_RECIPE = ROOT / "recipes" / "smollm2-135m" / "dpo" / "config_full_cpu.yaml"


@pytest.mark.slow
def test_dpo_on_two_cpu_processes_splits_the_pairs_tokenizes_once_and_resumes_after_a_kill(
        tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": f"Write about topic {i}."}],
        "chosen": [{"role": "assistant", "content": f"A long and careful note on topic {i}. " * 3}],
        "rejected": [{"role": "assistant", "content": "Short."}]}) + "\n" for i in range(4)))
    out = tmp_path / "dpo"
    sets = {"model": "tiny-random", "output_dir": str(out), "max_length": 256,
            "num_train_epochs": 3, "gradient_accumulation_steps": 1, "learning_rate": 1e-3,
            "save_strategy": "steps", "save_steps": 1, "save_total_limit": 1}
    args = [str(DPO_RECIPE), "--pairs", str(pairs)]
    for key, value in sets.items():
        args += ["--set", f"{key}={json.dumps(value)}"]

    _, first = _launch_and_kill_after_a_checkpoint(args, out, tmp_path / "dpo1.log")
    assert not (out / "final").exists()
    # TRL tokenized on rank 0; rank 1 loaded its cache (TRL's progress bar, shown per map run).
    assert first.replace("\r", "\n").count("Tokenizing train dataset: 100%") == 1, first[-3000:]

    # Second launch: resumes from the checkpoint the kill left and finishes.
    log2 = tmp_path / "dpo2.log"
    proc = _launch(args, log2)
    text = _wait(proc, log2)
    assert proc.returncode == 0, text[-3000:]
    record = json.loads((out / "final" / "lw_train.json").read_text())
    stats = record["stats"]
    assert stats["processes"] == 2 and stats["pairs"] == 4
    resumed = int(Path(stats["resumed_from"]).name.split("-")[1])
    assert 1 <= resumed < 6
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6 == 3 * 4 // 2  # each rank took half the pairs per epoch
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == list(range(1, 7))  # the resumed run continued the count, no step twice
    # One checkpoint, the record, the marker (and TRL's model card); the stored pairs, with
    # TRL's token cache in them, are gone once the run finished.
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "checkpoint-6", "final", "lw_run.json"]
