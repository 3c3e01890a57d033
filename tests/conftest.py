"""Shared fixtures: offline hub, the tiny random model, and a real fault-injecting server.

The ``tiny`` model runs where the kit would run it: on CUDA in bf16 when a GPU is present, else
on the CPU in fp32 (``lw.llm.hf.pick_device``). Tests put their tensors on ``tiny.device``
and compare activations with the ``tolerance(dtype)`` fixture. ``LW_TEST_DTYPE=bfloat16`` (or
float16) loads ``tiny`` in that dtype on any device, so a CPU run shows which tolerances a GPU
run needs. Tests that check that two ways of computing give the *same tokens* (batched vs alone,
the engine vs transformers' generate) use ``tiny_exact``, the same weights in fp32: in bf16
those ways round differently and the tiny model's nearly flat distribution lets that flip a
token.
"""

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


def _requested_dtype():
    """The dtype ``LW_TEST_DTYPE`` asks for (a torch dtype name), or None for the kit's own."""
    import torch

    name = os.environ.get("LW_TEST_DTYPE", "").strip()
    if not name:
        return None
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise pytest.UsageError(f"LW_TEST_DTYPE={name!r} is not a torch floating dtype; use "
                                "bfloat16, float16 or float32, or unset it.")
    return dtype


def _tolerance(dtype) -> dict:
    """``rtol``/``atol`` for ``torch.allclose`` on activations (keys, values, logits of the tiny
    model, magnitudes ~0.1-1) computed two ways in ``dtype``, e.g. a left-padded batch vs one
    row alone. fp32 agrees to ~2e-7 there (``atol=1e-5`` as before); a half-precision dtype
    rounds every op to its epsilon (bf16: 7.8e-3): kept keys/values vs a fresh prefill differed
    by up to 2e-3 in bf16 on a CPU (5e-4 in fp16), so 4 epsilons relative and absolute, which
    held on an H200 too (2026-11-26), and a wrong row (differences ~0.3) still fails."""
    import torch

    if dtype == torch.float32 or dtype == torch.float64:
        return {"rtol": 1e-5, "atol": 1e-5}
    eps = torch.finfo(dtype).eps
    return {"rtol": 4 * eps, "atol": 4 * eps}


def _run_at_once(code: str, count: int, cache_dir, timeout: float = 600) -> list[str]:
    """Start ``count`` Python processes running ``code`` together on the cache ``cache_dir``
    (as the ranks of a multi-process launch on a fresh machine); assert each succeeded and
    return their standard outputs."""
    env = {**os.environ, "LW_CACHE_DIR": str(cache_dir)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(count)]
    results = [p.communicate(timeout=timeout) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    return [out for out, _ in results]


@pytest.fixture
def run_at_once():
    """``run_at_once(code, count, cache_dir, timeout=600)``: see ``_run_at_once``."""
    return _run_at_once


@pytest.fixture(scope="session")
def requested_dtype():
    """The torch dtype ``LW_TEST_DTYPE`` names, or None (the kit picks: bf16 on CUDA)."""
    return _requested_dtype()


@pytest.fixture(scope="session")
def tolerance():
    """``tolerance(dtype)``: rtol/atol for comparing activations computed in ``dtype``."""
    return _tolerance


@pytest.fixture(scope="session")
def tiny():
    """The tiny random Llama on the real transformers backend, on the kit's default device and
    dtype (or ``LW_TEST_DTYPE``'s)."""
    import lw

    dtype = _requested_dtype()
    return lw.llm.load("tiny-random", batch_size=4, **({"dtype": dtype} if dtype else {}))


@pytest.fixture(scope="session")
def tiny_exact(tiny):
    """The same tiny model in fp32 on the same device: for tests that compare the tokens two
    computations produce (``tiny`` itself where it already is fp32, as on a CPU)."""
    import torch

    import lw

    if tiny.model.dtype == torch.float32:
        return tiny
    return lw.llm.load("tiny-random", batch_size=4, device=tiny.device, dtype=torch.float32)


@pytest.fixture
def tiny_whole_prefill(tiny_exact):
    """``tiny_exact`` (fp32) with prefix caching off, so every prompt is prefilled whole and two
    runs do the same arithmetic (the tiny model's flat distribution lets ~1e-7 differences flip
    a draw). In bf16 the static-cache engine (``lw.llm.slots``, whose buffer widths depend on
    earlier calls) wrote an AgentWrite item differently alone and with others (CPU, bf16)."""
    tiny = tiny_exact
    saved = tiny.prefixes.max_bytes
    tiny.prefixes.clear()
    tiny.prefixes.max_bytes = 0
    yield tiny
    tiny.prefixes.max_bytes = saved


@pytest.fixture(scope="session")
def server():
    """A real `lw.serve` process (tests/fault_server.py) on 127.0.0.1 serving tiny-random.

    Yields an object with .base_url, .key and .arm(plan, delay) to inject faults. The server's
    model runs on the CPU in fp32 even where a GPU is present: these tests are about the HTTP
    client, and a test comparing its replies with an in-process model loads that one on the
    CPU too, so greedy replies match exactly (in bf16 they may not, see ``tiny_exact``).
    """
    env = {**os.environ, API_KEY_VAR: API_KEY, "PYTHONUNBUFFERED": "1",
           "CUDA_VISIBLE_DEVICES": ""}
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


# Stand-ins for the paper's prompt files (lw.paper.prompts), in the kit's own words with the same
# placeholders: the real ones are fetched from GitHub, which these machines cannot reach.
OFFICIAL_STANDINS = {
    "judge": "Rate the reply to the request on six dimensions, 1 to 5, strictly.\n"
             "Request:\n$INST$\nReply:\n$RESPONSE$\nAnswer in JSON with Analysis, Relevance, "
             "Accuracy, Coherence, Clarity, Breadth and Depth, Reading Experience.",
    "plan": "Split this writing task into paragraphs, one line each, as 'Paragraph i - Main "
            "Point: ... - Word Count: N words'.\nTask:\n$INST$",
    "write": "Task:\n$INST$\nPlan:\n$PLAN$\nWritten so far:\n$TEXT$\nNow write $STEP$ only.",
}


@pytest.fixture
def official_prompts(tmp_path, monkeypatch):
    """lw.paper.prompts serving stand-in files from a temporary LW_DATA_DIR, with their checksums
    pinned in place of the real ones. Yields the stand-in texts by name."""
    import dataclasses
    import hashlib

    from lw.paper import prompts as paper_prompts

    folder = tmp_path / "official-data"
    folder.mkdir()
    files = {}
    for name, body in OFFICIAL_STANDINS.items():
        f = paper_prompts.FILES[name]
        (folder / f.filename).write_text(body, encoding="utf-8")
        files[name] = dataclasses.replace(f, sha256=hashlib.sha256(body.encode()).hexdigest())
    monkeypatch.setenv("LW_DATA_DIR", str(folder))
    monkeypatch.setattr(paper_prompts, "FILES", files)
    yield dict(OFFICIAL_STANDINS)
