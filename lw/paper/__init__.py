"""The paper's artefacts, in one place: what the kit takes from LongWriter as it is.

* ``lw.paper.fetch``: the one pinned, checksummed fetcher (``$LW_DATA_DIR``, cache, download).
* ``lw.paper.benchmarks``: LongBench-Write and LongWrite-Ruler rows (load, subset, row checks).
* ``lw.paper.prompts``: the paper's judge, plan and write prompts, fetched and verified.
* ``lw.paper.files``: the official ``pred.jsonl`` / ``judge.jsonl`` formats, read and written.
* ``lw.paper.tables``: the paper's LongBench-Write results, to set a run beside.

Nothing here imports a stage: the stages import these.
"""

import importlib

_SUBMODULES = ("benchmarks", "fetch", "files", "prompts", "tables")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"lw.paper.{name}")
    raise AttributeError(f"module 'lw.paper' has no attribute {name!r}")
