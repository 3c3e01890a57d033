"""Where the kit keeps things (folders only: what a size means is ``lw.profiles``).

Folders (each can be moved with an environment variable):
    LW_HOME       the kit's root: the checkout when run from one, else ``~/.cache/lw``
    LW_CACHE_DIR  converted models and downloads (default ``$LW_HOME/data/cache``)
    LW_RUN_DIR    where a run writes results, executed notebooks and records
                  (default ``$LW_HOME/runs/<size>``; the runner sets it for each notebook)

The run sizes (``SIZES``) name the run folders; ``lw.profiles.resolve_size`` says what each means.
"""

import os
from pathlib import Path

from lw.errors import LwError

SIZES = ("mock", "small", "full")


def size_name(size: str | None = None) -> str:
    """The run size's name: ``size``, else ``$LW_SIZE``, else ``small``."""
    name = size or os.environ.get("LW_SIZE") or "small"
    if name not in SIZES:
        raise LwError(f"unknown size {name!r}: use one of {', '.join(SIZES)} (SIZE or $LW_SIZE).")
    return name


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
        path = home() / "runs" / size_name(size)
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    """Where notebooks save figures: ``<run dir>/figures`` during a run, else ``figures/``."""
    base = Path(os.environ["LW_RUN_DIR"]) if os.environ.get("LW_RUN_DIR") else home()
    path = base / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path
