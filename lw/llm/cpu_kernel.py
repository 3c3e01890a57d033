"""The kit's compiled decoding kernels for CPUs (``decode_step.cpp`` beside this file).

One library, three jobs of a decoding step on a CPU:

- ``decode_step``: grouped-query attention in bf16 (``lw.llm.attention`` sends steps here); at
  notebook 05's shape (16 rows, 1,000-3,000 cached tokens, SmolLM2-135M) one layer's attention
  ran ~2.8x faster than torch's two products (benchmarks/bench_decode_attention.py);
- ``pack_rows`` / ``rows_linear``: bf16 linear layers for a few rows with AVX-512 BF16
  (``lw.llm.prepacked.use_rows_kernel``), where the CPU has it (``bf16_dot()``);
- ``sample_step``: a step's draws (``lw.llm.engine.sample``) in one pass per row.

It is compiled the first time a process asks for it on a machine (torch's extension builder,
g++ and ninja, ~45 s on 2 cores) into ``$LW_CACHE_DIR/kernels/<key>``, the key naming the
source, torch and Python, so an upgrade builds afresh instead of loading a stale library. One
process builds while the others wait on a lock file (the engine's processes in a multi-process
launch would otherwise compile into one folder at once). Where it cannot be had (no C++
compiler, a CPU without AVX2 and FMA, another architecture) ``load`` says why and the caller
decodes with torch's products instead: slower, never silently (``HFChatModel.info()`` reports
``decode_kernel``).

    kernel, why = load()   # (module with .decode_step, None) or (None, "why not")
"""

import hashlib
import os
from pathlib import Path

from lw import paths

SOURCE = Path(__file__).with_name("decode_step.cpp")
FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp"]  # OpenMP: torch's own runtime, its threads
_loaded: dict = {}


def unavailable() -> str | None:
    """Why this machine cannot run the kernel, or None: an x86-64 CPU whose vector unit torch
    reports as AVX2 or AVX-512 (both imply FMA), and a C++ compiler on the PATH."""
    import platform
    import shutil

    import torch

    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the kernel is written for x86-64 and this is {platform.machine()}"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"the CPU lacks AVX2 and FMA (torch reports {capability})"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return (f"no C++ compiler ({compiler!r} is not on the PATH; install g++, e.g. "
                "`apt install g++`, or set CXX)")
    return None


def build_key() -> str:
    """The build folder's name: what the compiled library depends on."""
    import sys

    import torch

    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:12]
    return f"decode_step-{digest}-torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"


def load(verbose: bool = False):
    """``(module, None)``, the compiled kernel (built once per machine, then loaded), or
    ``(None, why)``. The answer is kept for the process."""
    if "answer" in _loaded:
        return _loaded["answer"]
    why = unavailable()
    module = None
    if why is None:
        try:
            module = _build(verbose)
        except Exception as exc:  # a compiler error, a missing header: said, then torch's path
            first = str(exc).strip().splitlines()
            why = f"it did not compile ({type(exc).__name__}: {first[0] if first else ''})"
    _loaded["answer"] = (module, why)
    return _loaded["answer"]


def _build(verbose: bool):
    import fcntl

    from torch.utils import cpp_extension

    folder = paths.cache_dir() / "kernels" / build_key()
    folder.mkdir(parents=True, exist_ok=True)
    name = "lw_decode_step_" + build_key().split("-")[1]
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process compiles; the others wait, then load
        # torch's builder guards the folder with its own lock file, which a build killed
        # midway (Ctrl-C) leaves behind and then waits on for ever; under our lock no other
        # build is running, so such a file is stale.
        (folder / "lock").unlink(missing_ok=True)
        if not (folder / f"{name}.so").exists() and not verbose:
            print("Compiling the kit's CPU decoding kernel once for this machine (~1 minute)...")
        return cpp_extension.load(name, [str(SOURCE)], extra_cflags=FLAGS,
                                  extra_ldflags=["-fopenmp"], build_directory=str(folder),
                                  verbose=verbose)
