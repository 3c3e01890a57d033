"""lw: a research kit that reproduces and extends LongWriter (arXiv 2408.07055).

One module per pipeline stage; the numbered notebooks in ``notebooks/`` call into them.

    import lw
    model = lw.llm.load("smollm2-135m")
    out = model.generate([[{"role": "user", "content": "Write a haiku."}]])
    lw.text.count_words(out[0].text)
"""

from lw import llm, paths, store, text
from lw.errors import LwError

__version__ = "0.1.0"
__all__ = ["LwError", "llm", "paths", "store", "text", "__version__"]
