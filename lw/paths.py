"""Where the kit keeps things, and the one run-size switch every notebook reads.

Folders (each can be moved with an environment variable):
    LW_HOME       the kit's root: the checkout when run from one, else ``~/.cache/lw``
    LW_CACHE_DIR  converted models and downloads (default ``$LW_HOME/data/cache``)
    LW_RUN_DIR    where a run writes results, executed notebooks and records
                  (default ``$LW_HOME/runs/<size>``; the runner sets it for each notebook)

The size switch: ``SIZE`` in every notebook's parameters cell, ``None`` meaning "take ``$LW_SIZE``,
else ``small``". ``mock`` runs the tiny random model on a handful of items in seconds (what CI and
nbval run), ``small`` the embedded SmolLM2-135M on CPU, ``full`` a real model on a GPU.

    size = lw.paths.resolve_size(SIZE, model=MODEL)   # a Size: .name, .model, .batch_size
    model = lw.llm.load(size.model, batch_size=size.batch_size, **size.options())
    p = lw.profiles.get("01", size)                   # that notebook's defaults at this size

A ``Size`` says only what every notebook shares (the model and its batch); what a size means for
one notebook (prompt counts, budgets, recipes, filters) is that notebook's profile in
``lw.profiles``.
"""

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from lw.errors import LwError

SIZES = ("mock", "small", "full")


@dataclass(frozen=True)
class Size:
    """What one run size means for every notebook; per-notebook settings are in lw.profiles."""

    name: str
    model: str  # default model spec for lw.llm.load
    batch_size: int  # local generation batch (an openai: server's requests in flight)
    long_context: bool = False  # load known models with their documented long context

    def options(self, spec: str | None = None) -> dict:
        """``lw.llm.load`` options for ``spec`` (default: this size's model) at this size, the
        batch aside: the paper's options for its released checkpoints (``lw.llm.paper_options``) and,
        at ``full``, the model's documented long context (``lw.llm.context.
        long_context_options``: Qwen2.5's YaRN x4, 131,072 positions, so a 32,768-token answer
        fits beside its prompt).

            model = lw.llm.load(size.model, batch_size=size.batch_size, **size.options())
        """
        from lw.llm import paper_options
        from lw.llm.context import long_context_options

        spec = spec or self.model
        extra = long_context_options(spec) if self.long_context else {}
        return {**paper_options(spec), **extra}


_SIZES = {
    "mock": Size("mock", "tiny-random", batch_size=4),
    "small": Size("small", "smollm2-135m", batch_size=8),
    "full": Size("full", "hf:Qwen/Qwen2.5-7B-Instruct", batch_size=16, long_context=True),
}
FULL_MODEL = "Qwen/Qwen2.5-7B-Instruct"


def full_model(model: str = FULL_MODEL) -> str:
    """The ``full`` size's generator: vLLM on a server the kit starts (``vllm:``) where vLLM
    and CUDA are there, else the kit's own engine (``hf:``, CUDA graphs on a GPU), saying why."""
    from lw.llm.vllm_backend import vllm_available

    reason = vllm_available()
    if reason is None:
        return f"vllm:{model}"
    print(f"[lw] full size without vLLM ({reason}): generating with hf:{model} on the kit's "
          "engine instead (CUDA graphs on a GPU, ~10x slower than vLLM at long outputs).")
    return f"hf:{model}"


def resolve_size(size: str | None = None, **overrides) -> Size:
    """The ``Size`` for a name; ``None`` takes ``$LW_SIZE`` (default ``small``).

    Args:
        size: "mock", "small", "full" or None.
        overrides: fields to replace where not None (``model=MODEL``, ``batch_size=...``); a
            notebook's other per-size settings come from ``lw.profiles``.
    """
    name = size or os.environ.get("LW_SIZE") or "small"
    if name not in _SIZES:
        raise LwError(f"unknown size {name!r}: use one of {', '.join(SIZES)} (SIZE or $LW_SIZE).")
    known = [f.name for f in fields(Size) if f.name != "name"]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise LwError(f"resolve_size cannot override {unknown}: a Size has {known}; budgets and "
                      "counts are the notebook's profile (lw.profiles.get) or its parameters.")
    chosen = {k: v for k, v in overrides.items() if v is not None}
    if name == "full" and "model" not in chosen:
        chosen["model"] = full_model()
    return replace(_SIZES[name], **chosen)


def home() -> Path:
    """The kit's root folder (see module docstring)."""
    if os.environ.get("LW_HOME"):
        return Path(os.environ["LW_HOME"]).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists() and (checkout / "notebooks").is_dir():
        return checkout
    return Path.home() / ".cache" / "lw"


def cache_dir() -> Path:
    """Converted models and downloaded files."""
    path = Path(os.environ.get("LW_CACHE_DIR") or home() / "data" / "cache").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(size: str | None = None) -> Path:
    """The folder a run writes into: ``$LW_RUN_DIR`` if set (the runner sets it), else
    ``runs/<size>`` under the kit's root."""
    if os.environ.get("LW_RUN_DIR"):
        path = Path(os.environ["LW_RUN_DIR"]).expanduser()
    else:
        path = home() / "runs" / resolve_size(size).name
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    """Where notebooks save figures: ``<run dir>/figures`` during a run, else ``figures/``."""
    base = Path(os.environ["LW_RUN_DIR"]) if os.environ.get("LW_RUN_DIR") else home()
    path = base / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path
