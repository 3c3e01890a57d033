"""lw: a research kit that reproduces and extends LongWriter (arXiv 2408.07055).

One module per pipeline stage; the numbered notebooks in ``notebooks/`` call into them.

    import lw
    model = lw.llm.load("smollm2-135m")
    out = model.generate([[{"role": "user", "content": "Write a haiku."}]])
    lw.text.count_words(out[0].text)

Submodules load on first use (``lw.llm``, ``lw.plots`` ...), so ``import lw`` is quick.
"""

import importlib

from lw.errors import LwError

__version__ = "0.1.0"
_SUBMODULES = ("agentwrite", "data", "generation", "judge", "llm", "longbench", "paper", "paths",
               "plots", "prompts", "records", "ruler", "run", "stats",
               "scoring", "serve", "sft", "store", "text", "controlled", "report", "profiles")
__all__ = ["LwError", "__version__", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"lw.{name}")
    raise AttributeError(f"module 'lw' has no attribute {name!r}")
