"""lw: a research kit that reproduces and extends LongWriter (arXiv 2408.07055).

One module per paper stage (``lw.ruler``, ``lw.agentwrite``, ``lw.longbench``, ``lw.data``,
``lw.sft``, ``lw.controlled``), each with a command (``python -m lw.<stage>``), on a shared base;
the numbered notebooks in ``notebooks/`` call into them.

    import lw
    model = lw.llm.load("smollm2-135m")
    out = model.generate([[{"role": "user", "content": "Write a haiku."}]])
    lw.text.count_words(out[0].text)

Submodules load on first use (``lw.llm``, ``lw.plots`` ...), so ``import lw`` is quick.
"""

import importlib

from lw.errors import LwError

__version__ = "0.1.0"
_SUBMODULES = (
    # ground
    "errors", "text", "stats", "records", "store", "paths", "scoring", "progress", "llm",
    "prompts", "resources", "conversations",
    # the paper's artefacts, and what the stages share
    "paper", "generation", "judge",
    # the stages, in the paper's order (notebooks 01-06)
    "ruler", "agentwrite", "longbench", "data", "sft", "controlled",
    # on top
    "profiles", "plots", "report", "run", "preflight", "serve")
__all__ = ["LwError", "__version__", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"lw.{name}")
    raise AttributeError(f"module 'lw' has no attribute {name!r}")
