"""Progress bars that read right where they end up.

Interactively (JupyterLab, a terminal) a bar is tqdm's usual one: the notebook widget in a
notebook. A notebook executed by the runner (``lw.run`` sets ``LW_PROGRESS=text``) is saved,
and a saved widget shows only its first state (``0%| | 0/8``), so a finished run would look
unstarted; there the bar is plain text, refreshed at most once a minute, and its last line in
the saved copy is its final state: how far it got and how long it took.
"""

import os

VAR = "LW_PROGRESS"


def bar(iterable=None, **kwargs):
    """A tqdm bar (``tqdm(iterable, **kwargs)``), plain text when ``$LW_PROGRESS`` is ``text``."""
    if os.environ.get(VAR) == "text":
        from tqdm.std import tqdm

        kwargs.setdefault("mininterval", 60.0)
        kwargs.setdefault("ascii", True)
        return tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
