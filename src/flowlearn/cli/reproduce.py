"""``flowlearn reproduce``: the three papers' experiments, our numbers beside the published ones.

Runs paper 000's Figs. 2-5, paper 001's Ising Table 1 and paper 002's data-efficiency Table 1 (on the bundled
digits) and writes ``report.md`` and ``report.html`` into ``--out`` (:mod:`flowlearn.experiments.reproduce`).
``--quick``: reduced sizes (minutes on 2 CPU cores); ``--full``: the published settings.  Both resume.
"""

from __future__ import annotations

import argparse

from ..experiments import reproduce as experiment
from ..io import check_out_dir


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="reproduce the papers' tables and figures into a report",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True,
                      help="reduced sizes, a few minutes (default)")
    mode.add_argument("--full", dest="quick", action="store_false", help="the papers' settings (long; resumable)")
    p.add_argument("--parts", nargs="+", choices=list(experiment.PARTS), default=list(experiment.PARTS),
                   help="which parts to run (default all)")
    p.add_argument("--restart", action="store_true", help="rerun parts already finished in --out")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    check_out_dir(args.out, name="--out")
    experiment.run_reproduce(args.out, experiment.QUICK if args.quick else experiment.FULL, parts=args.parts,
                             restart=args.restart)
    return 0
