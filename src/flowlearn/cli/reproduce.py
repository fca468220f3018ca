"""``flowlearn reproduce``: the three papers' experiments, our numbers beside the published ones.

Runs the learning experiments of paper 000 (Figs. 2-5), the Ising Table 1 of paper 001 and the
data-efficiency Table 1 of paper 002 on the bundled digits, and writes ``report.md`` and
``report.html`` (tables, figures, environment, wall time of each part) into ``--out``.
``--quick`` uses reduced sizes (minutes on 2 CPU cores); ``--full`` the published settings.
Both resume: finished parts are reused and each command continues from its own checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from ..io import check_out_dir, ensure_out_dir, save_json
from ..reporting import Report, Table
from .reproduce_parts import PARTS, PartResult


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="reproduce the papers' tables and figures into a report",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True,
                      help="reduced sizes, a few minutes (default)")
    mode.add_argument("--full", dest="quick", action="store_false", help="the papers' settings (long; resumable)")
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS),
                   help="which parts to run (default all)")
    p.add_argument("--restart", action="store_true", help="rerun parts already finished in --out")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def environment() -> dict:
    import numpy
    import scipy
    import torch

    import flowlearn

    return {"flowlearn": flowlearn.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


def run(args) -> int:
    check_out_dir(args.out, name="--out")
    out = ensure_out_dir(args.out, name="--out")
    env = environment()  # before the parts change the number of threads
    results: dict[str, PartResult] = {}
    total0 = time.perf_counter()
    for name in args.parts:
        part_dir = ensure_out_dir(out / name)
        done = out / f"{name}.part.json"  # beside the part's directory, which its commands own
        if done.exists() and not args.restart:
            stored = json.loads(done.read_text())
            if stored.get("quick") == args.quick:
                results[name] = PartResult.from_json(stored["result"])
                print(f"[{name}] finished earlier ({results[name].seconds:.0f} s): reusing {done}")
                continue
        print(f"[{name}] running ({'quick' if args.quick else 'full'}) ...", flush=True)
        t0 = time.perf_counter()
        res = PARTS[name](part_dir, args.quick)
        res.seconds = time.perf_counter() - t0
        save_json(done, {"quick": args.quick, "result": res.to_json()})
        results[name] = res
        print(f"[{name}] done in {res.seconds:.0f} s", flush=True)

    report = Report(f"flowlearn reproduction report ({'quick' if args.quick else 'full'})")
    report.text("Each part below runs flowlearn commands; the papers' published numbers stand beside ours. "
                "Every figure and JSON file lies in the part's folder next to this report.")
    report.table(Table(["part", "wall time (s)"], [[r.title, r.seconds] for r in results.values()],
                       caption="Wall time of each part"))
    for name, res in results.items():
        report.heading(res.title)
        for t in res.tables:
            report.table(t)
        for note in res.notes:
            if note:
                report.text(note)
        for path, caption in res.figures:
            report.figure(out / name / path, caption)
    report.heading("Environment")
    report.table(Table(["key", "value"], [[k, v] for k, v in env.items()]))
    md, html = report.write(out)
    save_json(out / "reproduce.json", {"quick": args.quick, "environment": env,
                                       "parts": {k: v.to_json() for k, v in results.items()},
                                       "seconds": time.perf_counter() - total0})
    print(f"wrote {md} and {html}")
    return 0
