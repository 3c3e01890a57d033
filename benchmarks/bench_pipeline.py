"""Wall time per notebook at each size, as a table.

    python benchmarks/bench_pipeline.py                    # runs mock now; small from runs/small
    python benchmarks/bench_pipeline.py --run small        # also runs small (~30 min on 2 cores)

The mock pipeline is executed fresh into a temporary folder (``--force``), so its times are
measured in this run. A `small` pipeline takes about 30 minutes, so by default its times are read
from the last `make reproduce` (``runs/small/summary.json``, written by the runner as each notebook
finishes) and marked as such; ``--run small`` measures it here instead.
"""

import argparse
import json
import platform
import tempfile
from pathlib import Path

import lw
from lw import paths


def measure(size: str, out: Path) -> dict:
    return lw.run.run(size, force=True, out=out)["seconds"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", nargs="*", default=["mock"], choices=paths.SIZES,
                    help="sizes to execute now (default mock)")
    args = ap.parse_args(argv)
    columns = {}
    for size in ("mock", "small"):
        if size in args.run:
            with tempfile.TemporaryDirectory() as tmp:
                columns[f"{size} (now)"] = measure(size, Path(tmp) / size)
        else:
            summary = paths.home() / "runs" / size / "summary.json"
            if summary.exists():
                columns[f"{size} (last run)"] = json.loads(summary.read_text())["seconds"]
    names = sorted({n for col in columns.values() for n in col})
    print(f"lw {lw.__version__} · python {platform.python_version()} · {platform.machine()}")
    print(f"\n{'notebook':<28}" + "".join(f"{c:>18}" for c in columns))
    for n in names:
        print(f"{n:<28}" + "".join(f"{col.get(n, float('nan')):>18.1f}"
                                   for col in columns.values()))
    print(f"{'total':<28}" + "".join(f"{sum(col.values()):>18.1f}" for col in columns.values()))


if __name__ == "__main__":
    main()
