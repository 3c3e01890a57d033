"""Shared fixtures: offline hub, the tiny random model, and a real fault-injecting server."""

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

# Tests never touch the network: the hub libraries answer from local files or fail fast.
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent
API_KEY_VAR = "LW_TEST_SERVER_KEY"
API_KEY = "sk-test-" + "7f3a9c" * 4


@pytest.fixture(scope="session")
def tiny():
    """The tiny random Llama on the real transformers backend."""
    import lw

    return lw.llm.load("tiny-random", batch_size=4)


@pytest.fixture
def tiny_whole_prefill(tiny):
    """``tiny`` with prefix caching off, so every prompt is prefilled whole and two runs do the
    same arithmetic (the tiny model's flat distribution lets ~1e-7 differences flip a draw)."""
    saved = tiny.prefixes.max_bytes
    tiny.prefixes.clear()
    tiny.prefixes.max_bytes = 0
    yield tiny
    tiny.prefixes.max_bytes = saved


@pytest.fixture(scope="session")
def server():
    """A real `lw.serve` process (tests/fault_server.py) on 127.0.0.1 serving tiny-random.

    Yields an object with .base_url, .key and .arm(plan, delay) to inject faults.
    """
    env = {**os.environ, API_KEY_VAR: API_KEY, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fault_server.py"), "--model", "tiny-random",
         "--port", "0", "--api-key-env", API_KEY_VAR, "--batch-wait", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    deadline = time.time() + 120
    base_url = None
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
        if m:
            base_url = m.group(1)
            break
    if base_url is None:
        proc.kill()
        pytest.fail("test server did not start:\n" + "".join(lines))
    # Keep reading its output so a chatty server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()

    class Server:
        key = API_KEY

        def __init__(self):
            self.base_url = base_url

        def arm(self, plan=(), delay=3.0):
            self._post({"plan": list(plan), "delay": delay})

        def seen(self) -> int:
            with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/_faults") as r:
                return json.loads(r.read())["seen"]

        def _post(self, payload):
            req = urllib.request.Request(self.base_url.removesuffix("/v1") + "/_faults",
                                         data=json.dumps(payload).encode(), method="POST")
            urllib.request.urlopen(req).read()

    yield Server()
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
