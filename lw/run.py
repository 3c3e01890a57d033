"""Run the numbered notebooks in order with papermill, and collect their key numbers.

    python -m lw.run --size small                 # all notebooks on the embedded model
    python -m lw.run --size mock --only 00        # just the quickstart, in seconds
    python -m lw.run -p MODEL hf:my/checkpoint    # a parameter for every notebook
    python -m lw.run --force                      # redo notebooks that already finished
    python -m lw.run --size full --check          # the plan on this machine, before any work

Executed copies go to ``runs/<size>/`` (git-ignored), never over the sources. Each notebook ends
with ``lw.run.record(name, {...})``, which writes ``records/<name>.json`` in the run folder; the
runner gathers them into ``summary.json``. A notebook that finished with the same parameters (and
unchanged source) is skipped on a rerun, so an interrupted run resumes; the first failure stops the run with the
cell, the error and the path of the executed copy that holds the traceback.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lw import paths
from lw.errors import LwError


def record(name: str, values: dict) -> dict:
    """Save a notebook's key numbers to ``<run dir>/records/<name>.json`` and return them."""
    size = os.environ.get("LW_SIZE") or values.get("size")
    entry = {"notebook": name, "values": values,
             "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    folder = paths.run_dir(size) / "records"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(entry, indent=2, default=str))
    return values


def notebooks(folder: Path | None = None) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in order."""
    folder = folder or paths.home() / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def run(size: str, only: list[str] | None = None, force: bool = False,
        out: Path | None = None, parameters: dict | None = None,
        folder: Path | None = None) -> dict:
    """Execute the notebooks; returns ``{notebook: seconds or "skipped"}``.

    Args:
        size: "mock", "small" or "full" (becomes every notebook's SIZE).
        only: notebook number prefixes or names to run (default all).
        force: rerun notebooks that already finished with the same parameters.
        out: run folder (default ``runs/<size>``).
        parameters: extra papermill parameters for every notebook.
        folder: where the notebooks are (default the kit's ``notebooks/``).
    """
    import papermill

    size = paths.size_name(size)
    out = Path(out or paths.home() / "runs" / size).resolve()
    params = {"SIZE": size, **(parameters or {})}
    chosen = [nb for nb in notebooks(folder)
              if not only or any(nb.name.startswith(o) or nb.stem == o for o in only)]
    if not chosen:
        raise LwError(f"no notebooks match {only} in {folder or paths.home() / 'notebooks'}.")
    # The kernels inherit these. A saved widget shows only its first state (0/N), so a finished
    # run would look unstarted: LW_PROGRESS=text makes the kit's bars plain text ending on their
    # final state (lw.progress), and HF_HUB_DISABLE_PROGRESS_BARS silences transformers' and
    # the hub's own (weights loading, downloads).
    os.environ.update(LW_RUN_DIR=str(out), LW_SIZE=size, LW_PROGRESS="text",
                      HF_HUB_DISABLE_PROGRESS_BARS="1")
    (out / "done").mkdir(parents=True, exist_ok=True)
    timings = {}
    for nb in chosen:
        done = out / "done" / f"{nb.stem}.json"
        stamp = {"parameters": params, "notebook": _digest(nb)}
        if not force and done.exists() and {k: json.loads(done.read_text()).get(k)
                                            for k in stamp} == stamp:
            print(f"[lw.run] {nb.name}: finished earlier with these parameters, skipped "
                  "(--force to redo)")
            timings[nb.stem] = "skipped"
            continue
        done.unlink(missing_ok=True)
        print(f"[lw.run] {nb.name} at size {size} ...", flush=True)
        start = time.perf_counter()
        executed = out / nb.name
        try:
            papermill.execute_notebook(str(nb), str(executed), parameters=params,
                                       cwd=str(nb.parent), progress_bar=True,
                                       kernel_name="python3")
        except papermill.PapermillExecutionError as exc:
            first = (exc.source or "").strip().splitlines()[:1] or [""]
            raise LwError(f"{nb.name} failed in cell {exc.exec_count} (`{first[0][:60]}`): "
                          f"{exc.ename}: {exc.evalue}\nThe executed copy with the full traceback "
                          f"is {executed}. Fix the cause and rerun: finished notebooks are "
                          "skipped.") from exc
        seconds = round(time.perf_counter() - start, 1)
        done.write_text(json.dumps({**stamp, "seconds": seconds}))
        timings[nb.stem] = seconds
        print(f"[lw.run] {nb.name}: done in {seconds} s", flush=True)
    summary = collect(out, timings)
    from lw import report

    print(f"[lw.run] summary: {out / 'summary.json'}\n[lw.run] report: {report.write(out)}")
    return summary


def _digest(nb: Path) -> str:
    """Hash of a notebook's cell sources: an edited notebook is not skipped as finished."""
    import hashlib

    cells = json.loads(nb.read_text())["cells"]
    return hashlib.sha256(json.dumps([c["source"] for c in cells]).encode()).hexdigest()[:16]


def collect(out: Path, timings: dict | None = None) -> dict:
    """Merge every ``records/*.json`` of a run folder into ``summary.json``."""
    records = {p.stem: json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))}
    # Times come from the done stamps, so a resumed run still reports every notebook's time.
    stamps = {p.stem: json.loads(p.read_text()) for p in sorted((out / "done").glob("*.json"))}
    seconds = {k: v["seconds"] for k, v in stamps.items() if "seconds" in v}
    seconds.update({k: v for k, v in (timings or {}).items() if v != "skipped"})
    summary = {"run_dir": str(out), "seconds": seconds,
               "records": {k: r["values"] for k, r in records.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def restore_checked_counts(paths_=None) -> list[Path]:
    """Give the nbval check cells (metadata ``keep_output``) back the execution count their
    stored outputs carry: nbstripout keeps their outputs but clears the count, and nbval then
    refuses them ("Unrun reference cell has outputs"). ``make strip`` runs this after it.
    Returns the notebooks changed."""
    changed = []
    for path in paths_ or notebooks():
        path = Path(path)
        nb = json.loads(path.read_text())
        touched = False
        for cell in nb["cells"]:
            keep = cell.get("metadata", {}).get("keep_output")
            if cell["cell_type"] == "code" and keep and cell.get("outputs") \
                    and cell.get("execution_count") is None:
                cell["execution_count"] = 1
                touched = True
        if touched:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lw.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default=os.environ.get("LW_SIZE", "small"),
                    choices=paths.SIZES)
    ap.add_argument("--only", nargs="*", help="notebook numbers or names, e.g. 00 03")
    ap.add_argument("--force", action="store_true", help="redo finished notebooks")
    ap.add_argument("--check", action="store_true", help="print the run's plan (models, "
                    "servers, contexts, requests and tokens, what will not fit) and stop")
    ap.add_argument("--out", type=Path, help="run folder (default runs/<size>)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                    metavar=("NAME", "VALUE"), help="papermill parameter (VALUE read as JSON "
                    "where it parses, else as a string)")
    args = ap.parse_args(argv)
    params = {k: _literal(v) for k, v in args.parameter}
    if args.check:
        from lw import preflight

        return preflight.main(args.size, params)
    try:
        summary = run(args.size, args.only, args.force, args.out, params)
    except LwError as exc:
        print(f"[lw.run] stopped: {exc}", file=sys.stderr)
        return 1
    for name, secs in summary["seconds"].items():
        print(f"  {name:<32} {secs:>8} s")
    return 0


def _literal(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


if __name__ == "__main__":
    raise SystemExit(main())
