"""Summarise whatever cells of ``benchmarks/gfe_table.py`` runs exist (any number of seeds per cell).

    .venv/bin/python -m benchmarks.gfe_table_summary runs/gfe_table runs/gfe_table_subset ... --out runs/gfe_table_all

Reads ``DIR/PART/cells/*.json`` of every given run directory, groups them by part
(``protocol-optimizer``) and size, and writes ``OUT/table.json`` and ``OUT/table.md`` with the mean,
standard deviation and number of seeds of every row
(:func:`flowlearn.experiments.gfe_data_efficiency.summarise`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.gfe_table import PARTS, markdown
from flowlearn.experiments.gfe_data_efficiency import summarise
from flowlearn.io import atomic_write, save_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories of gfe_table.py")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    tables = {}
    for part in PARTS:
        records = [json.loads(f.read_text()) for run in args.runs for f in sorted((Path(run) / part / "cells").glob("*.json"))]
        if records:
            tables[part] = summarise(records, "mnist5k")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "table.json", {"dataset": "mnist5k", "parts": tables, "sources": args.runs})
    counts = {f"{part} N={size}": {k: v["n_seeds"] for k, v in row.items() if isinstance(v, dict) and v.get("n_seeds")}
              for part, t in tables.items() for size, row in t["rows"].items()}
    distinct = {n for c in counts.values() for n in c.values()}
    if len(distinct) == 1:
        seeds = f"{distinct.pop()} seeds in every cell"
    else:
        seeds = "seeds per cell: " + "; ".join(f"{cell}: " + ", ".join(f"{k} {n}" for k, n in c.items())
                                             for cell, c in counts.items())
    text = markdown(tables) + "\n" + seeds + "\n"
    with atomic_write(out / "table.md", "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
