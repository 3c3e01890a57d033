"""vLLM on a kit-managed server: the process manager against real server processes (the kit's
own ``lw.serve`` with tiny-random, ``http.server``, commands that fail), the ``vllm serve``
command line, ``load("vllm:...")`` end to end through a stand-in ``vllm`` package, notebook 03's
model loop never running two of its servers at once, a clean refusal without CUDA or vLLM, and a
real generation where a GPU and vLLM are present."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import lw
from lw.errors import LwError
from lw.llm import lifecycle, vllm_backend
from lw.llm.managed_server import ManagedServer
from lw.llm.openai_compat import OpenAIChatModel
from lw.llm.vllm_backend import vllm_available, vllm_command

ROOT = Path(__file__).resolve().parent.parent


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid`` (Linux /proc)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def static_server(tmp_path):
    """``http.server`` answering 200 on /v1/models: a real server that starts in ~0.1 s."""
    (tmp_path / "v1").mkdir(exist_ok=True)
    (tmp_path / "v1" / "models").write_text('{"data": []}')
    return lambda port: [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                         "--directory", str(tmp_path)]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@needs_proc
def test_managed_lw_serve_generates_then_close_leaves_nothing():
    key = "sk-managed-test"
    srv = ManagedServer(lambda port: [sys.executable, "-m", "lw.serve", "--model", "tiny-random",
                                      "--port", port, "--api-key-env", "MANAGED_KEY"],
                        name="lw.serve", env={"MANAGED_KEY": key}, api_key=key,
                        start_timeout=120, stop_grace=10, cwd=ROOT)
    with srv:
        assert srv.running() and group_members(srv.pid)
        model = OpenAIChatModel("tiny-random", base_url=srv.base_url, api_key=key,
                                continue_final_message=True, concurrency=4)
        outs = model.generate(["Say hi.", "Plan an essay."], prefix=[None, "Paragraph 1 -"],
                              max_new_tokens=6, temperature=0.0)
        assert all(o.completion_tokens > 0 and o.finish_reason != "error" for o in outs)
    assert not srv.running()
    assert group_members(srv.pid) == []
    assert port_free(srv.port)
    with pytest.raises(LwError, match="closed"):
        srv.check_alive()
    srv.close()  # twice is fine


def test_server_that_exits_at_once_raises_with_its_output():
    command = [sys.executable, "-c",
               "import sys; print('error: unrecognized arguments: --bogus-flag'); sys.exit(2)"]
    with pytest.raises(LwError, match=r"exited during start-up \(exit status 2\)"
                                      r"[\s\S]*unrecognized arguments: --bogus-flag"):
        ManagedServer(lambda port: command, name="test server", start_timeout=30)


@needs_proc
def test_start_timeout_stops_the_process(tmp_path):
    command = [sys.executable, "-c", "import time; print('loading weights', flush=True); "
               "time.sleep(120)"]
    log = tmp_path / "server.log"
    started = time.monotonic()
    with pytest.raises(LwError, match=r"did not answer[\s\S]*loading weights[\s\S]*start_timeout"):
        ManagedServer(lambda port: command, name="test server", start_timeout=1.5,
                      stop_grace=5, log_path=log)
    assert time.monotonic() - started < 30  # the sleeping process was not waited for
    # Every process started for it is gone: nothing in /proc still runs its command.
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                 and b"loading weights" in _cmdline(p)]
    assert leftovers == []


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""


@needs_proc
def test_server_stops_when_the_kit_process_is_killed(tmp_path):
    """SIGKILL leaves no atexit to run: the watchdog sees its stdin close and stops the server."""
    command = static_server(tmp_path)(0)
    script = textwrap.dedent(f"""
        import os, signal
        from lw.llm.managed_server import ManagedServer
        command = {command!r}
        srv = ManagedServer(lambda port: command[:3] + [port] + command[4:], start_timeout=30,
                            stop_grace=2)
        print("PGID", srv.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, timeout=60).stdout
    pgid = int(out.split("PGID")[1].split()[0])
    deadline = time.monotonic() + 15
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(pgid) == []


def test_vllm_command_line_from_options():
    argv = vllm_command("Qwen/Qwen2.5-7B-Instruct", 8123, served_model_name="qwen",
                        max_num_seqs=128, enable_prefix_caching=True, generation_config="vllm",
                        dtype="bfloat16", gpu_memory_utilization=0.85, max_model_len=32768,
                        tensor_parallel_size=2, enforce_eager=False, seed=None,
                        compilation_config={"cudagraph_mode": "FULL"})
    assert argv[:5] == [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve",
                        "Qwen/Qwen2.5-7B-Instruct"]
    assert argv[5:] == [
        "--host", "127.0.0.1", "--port", "8123", "--served-model-name", "qwen",
        "--max-num-seqs", "128", "--enable-prefix-caching", "--generation-config", "vllm",
        "--dtype", "bfloat16", "--gpu-memory-utilization", "0.85", "--max-model-len", "32768",
        "--tensor-parallel-size", "2", "--no-enforce-eager",
        "--compilation-config", '{"cudagraph_mode": "FULL"}']
    with pytest.raises(LwError, match="set by the kit"):
        vllm_command("m", 1, api_key="sk-mine")


FAKE_VLLM_MAIN = '''
"""Stands in for ``vllm serve``: records its argv, then serves tiny-random with lw.serve.
With $FAKE_VLLM_EVENTS set it first appends its model and the other stand-ins alive now (same
first path part of the model name) to that file: what a GPU would hold at once."""
import argparse, json, os, sys
from pathlib import Path
argv = sys.argv[1:]
json.dump(argv, open(os.environ["FAKE_VLLM_ARGV"], "w"))
ap = argparse.ArgumentParser()
ap.add_argument("serve"); ap.add_argument("model")
ap.add_argument("--port"); ap.add_argument("--served-model-name")
args, _ = ap.parse_known_args(argv)
if os.environ.get("FAKE_VLLM_EVENTS"):
    tag, others = args.model.split("/")[0].encode(), []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if (entry.name.isdigit() and int(entry.name) != os.getpid() and state != "Z"
                and b"vllm.entrypoints.cli.main" in cmd and tag in cmd
                and b"_watchdog" not in cmd):
            others.append(int(entry.name))
    with open(os.environ["FAKE_VLLM_EVENTS"], "a") as f:
        f.write(json.dumps({"model": args.model, "others": others}) + "\\n")
from lw.serve import main
sys.exit(main(["--model", "tiny-random", "--name", args.served_model_name, "--port", args.port,
               "--api-key-env", "VLLM_API_KEY", "--batch-wait", "0.02"]))
'''


def install_fake_vllm(tmp_path, monkeypatch):
    """Put the stand-in ``vllm`` package on the servers' path and let vllm: specs load here."""
    cli = tmp_path / "fake" / "vllm" / "entrypoints" / "cli"
    cli.mkdir(parents=True)
    for d in (cli, cli.parent, cli.parent.parent):
        (d / "__init__.py").write_text("")
    (cli / "main.py").write_text(FAKE_VLLM_MAIN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "fake"), str(ROOT)]))
    monkeypatch.setenv("FAKE_VLLM_ARGV", str(tmp_path / "argv.json"))
    monkeypatch.setattr(vllm_backend, "vllm_available", lambda: None)


@needs_proc
def test_load_vllm_runs_a_managed_server(tmp_path, monkeypatch):
    """load("vllm:...") end to end with a stand-in vllm package (the real one needs a GPU)."""
    install_fake_vllm(tmp_path, monkeypatch)

    model = lw.llm.load("vllm:org/tiny", gpu_memory_utilization=0.3, max_model_len=2048,
                        batch_size=8, max_new_tokens=6, max_retries=2, backoff=0.1)
    server = model.server
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:2] == ["serve", "org/tiny"]
    assert "--enable-prefix-caching" in argv and "--batch-size" not in argv
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.3"
    assert argv[argv.index("--max-num-seqs") + 1] == str(model.concurrency) == "128"
    assert model.supports_prefix and model.info()["server"] == "kit-managed vLLM server"
    assert "kit-managed vLLM server at http://127.0.0.1:" in repr(model)

    outs = model.generate(["Say hi.", "Plan an essay."], prefix=[None, "Paragraph 1 -"])
    assert all(o.completion_tokens > 0 for o in outs)

    # A server that dies mid-run is named in the error, with its output, not retried forever.
    for pid in group_members(server.pid):
        if pid != server.pid:
            os.kill(pid, signal.SIGKILL)
    with pytest.raises(LwError, match="vLLM server at .* exited"):
        model.generate(["Say hi."])
    model.close()
    assert group_members(server.pid) == [] and port_free(server.port)
    assert "stopped" in repr(model)


def live_stand_ins(tag: str) -> list[int]:
    """Live (non-zombie) stand-in vLLM servers whose model names start with ``tag``."""
    found = []
    for entry in Path("/proc").iterdir():
        cmd = _cmdline(entry)
        if (entry.name.isdigit() and b"vllm.entrypoints.cli.main" in cmd and tag.encode() in cmd
                and b"_watchdog" not in cmd):
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                found.append(int(entry.name))
    return found


@needs_proc
@pytest.mark.parametrize("judge", ["judge", None], ids=["separate-judge", "self-judge"])
def test_notebook_03_loop_never_runs_two_vllm_servers_at_once(tmp_path, monkeypatch, judge):
    """Notebook 03's loop (lw.longbench.run_models) with two vllm: models and a vllm: judge, or
    each model judging itself: every stand-in server finds no other one alive when it starts,
    and none is left at the end."""
    install_fake_vllm(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_VLLM_EVENTS", str(tmp_path / "events.jsonl"))
    tag = f"gpushare{os.getpid()}x{tmp_path.name}"
    models = [f"vllm:{tag}/a", f"vllm:{tag}/b"]
    rows = [{"id": f"r{i}", "prompt": f"Write {n} words.", "length": n}
            for i, n in enumerate([5, 9])]
    preds, judged = lw.longbench.run_models(
        models, rows, tmp_path / "out", 2, judge=f"vllm:{tag}/{judge}" if judge else None,
        judge_settings={"retries": 1, "max_new_tokens": 4}, max_new_tokens=4, temperature=0.5,
        seed=0)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    served = [f"{tag}/a", f"{tag}/b"] + ([f"{tag}/{judge}"] if judge else [])
    assert [e["model"] for e in events] == served  # one start each: self-judging reuses it
    assert all(e["others"] == [] for e in events), events
    assert live_stand_ins(tag) == []
    assert lifecycle.held() is None
    for spec in models:
        assert [p["status"] for p in preds[spec]] == ["done", "done"]
        assert len(judged[spec]) == 2
        assert {j["judge"]["spec"] for j in judged[spec]} == {f"vllm:{tag}/{judge}" if judge
                                                                else spec}


@pytest.mark.skipif(vllm_available() is None, reason="vLLM can run here")
def test_without_gpu_or_vllm_load_says_why():
    with pytest.raises(LwError, match="cannot load vllm:.*(CUDA|pip install)"):
        lw.llm.load("vllm:HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.mark.gpu
@pytest.mark.skipif(vllm_available() is not None, reason=str(vllm_available()))
def test_vllm_server_generates_with_and_without_prefix():
    from lw.llm.embedded import smollm2_dir

    with lw.llm.load(f"vllm:{smollm2_dir()}", gpu_memory_utilization=0.3,
                     max_model_len=4096) as model:
        outs = model.generate(["Say hi.", "Plan an essay."], prefix=[None, "Paragraph 1 -"],
                              max_new_tokens=8)
        assert all(o.completion_tokens > 0 and o.finish_reason != "error" for o in outs)
        pgid = model.server.pid
    assert not model.server.running()
    if Path("/proc/self/stat").exists():
        assert group_members(pgid) == []


@pytest.mark.gpu
@pytest.mark.skipif(vllm_available() is not None, reason=str(vllm_available()))
def test_vllm_in_process_still_reachable():
    from lw.llm.embedded import smollm2_dir

    model = lw.llm.load(f"vllm:{smollm2_dir()}", server=False, gpu_memory_utilization=0.3,
                        max_model_len=4096)
    outs = model.generate(["Say hi."], prefix="Hello", max_new_tokens=8)
    assert outs[0].completion_tokens > 0
