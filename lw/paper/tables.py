"""The paper's LongBench-Write results, as data to set a run beside.

    lw.paper.tables.paper_table()   # model, S, S_l, S_q, unverified (fields not checked in the text)

Numbers marked unverified were recalled from the paper but could not be checked against its
text; tables and plots must show them as such (``paper_table(mark=True)`` appends " *").
"""

import json
from pathlib import Path

FILE = Path(__file__).parent / "paper_results.json"


def paper_rows() -> list[dict]:
    return json.loads(FILE.read_text())["rows"]


def paper_table(mark: bool = False):
    """The table as a DataFrame; with ``mark`` the unverified numbers become strings ending "*"."""
    import pandas as pd

    rows = []
    for r in paper_rows():
        row = {"model": r["model"], "source": "paper"}
        for key in ("S", "S_l", "S_q"):
            row[key] = f"{r[key]} *" if mark and key in r["unverified"] else r[key]
        row["unverified"] = ", ".join(r["unverified"])
        rows.append(row)
    return pd.DataFrame(rows)
