"""``flowlearn gradcheck``: per-pixel accuracy of a gradient method against a reference (paper 000, Fig. 3).

At uniform weight patches, computes the Riemannian gradient of the loss with ``--method`` and with
``--reference`` (autodiff of Euler with a very small step by default) and writes to ``--out``:
``gradcheck.json/.png`` (fraction of active pixels whose cosine is >= 0.9 and >= 0.99, overall cosine, timings;
cosine and gradient-norm maps), ``rank_study.json/.png`` (Fig. 4b); with ``--studies`` also ``krylov_study``
and ``time_study`` (Figs. 4a, 4c).
"""

from __future__ import annotations

import argparse

from .._checks import UserInputError
from ..experiments.weight_learning import gradient_check
from ._run import add_run_arguments, open_run, set_threads
from .learn import METHOD_NAMES, add_problem_arguments, load_problem, method


def register(subparsers) -> None:
    parser = subparsers.add_parser("gradcheck", help="per-pixel cosine between two gradient methods (Fig. 3)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_arguments(parser)
    parser.add_argument("--method", choices=METHOD_NAMES, default="lowrank")
    parser.add_argument("--m", type=int, default=10, help="Krylov dimension of --method (default 10)")
    parser.add_argument("--rank", type=int, default=1, help="rank of lowrank (default 1)")
    parser.add_argument("--reference", choices=METHOD_NAMES, default="autodiff-euler")
    parser.add_argument("--ref-step", type=float, default=0.005, help="Euler step of the reference (default 0.005)")
    parser.add_argument("--ref-m", type=int, default=30, help="Krylov dimension of an autodiff-expint reference")
    parser.add_argument("--min-norm", type=float, default=1e-3,
                        help="pixels count when their reference gradient norm is >= this times the maximum")
    parser.add_argument("--studies", action="store_true", help="also run the Krylov-dimension and T studies")
    parser.add_argument("--study-iters", type=int, default=10, help="training iterations per study curve")
    add_run_arguments(parser, resumable=False)
    parser.set_defaults(func=run)


def run(args) -> int:
    problem, _, _, _ = load_problem(args)
    grad = method(args.method, args.m, args.rank, args.ref_step)
    reference = method(args.reference, args.m, args.rank, args.ref_step, expint_m=args.ref_m)
    if not args.min_norm >= 0:
        raise UserInputError(f"--min-norm must be >= 0, got {args.min_norm}")
    if args.studies and args.study_iters < 1:
        raise UserInputError(f"--study-iters must be >= 1 with --studies, got {args.study_iters}")
    set_threads(args.threads)
    with open_run(args, "gradcheck", seed=args.seed) as run_dir:
        out = run_dir.path
        r = gradient_check(out, problem, grad, reference, min_norm=args.min_norm, m=args.m, studies=args.studies,
                           study_iters=args.study_iters, args={k: v for k, v in vars(args).items() if k != "func"})
    print(f"gradcheck {r['method']} vs {r['reference']}: {100 * r['fraction_ge_0.9']:.2f} % of "
          f"{r['active_pixels']} active pixels have cosine >= 0.9, {100 * r['fraction_ge_0.99']:.2f} % "
          f">= 0.99 (overall cosine {r['overall_cosine']:.6f}; {r['seconds']:.2f} s vs "
          f"{r['reference_seconds']:.2f} s) -> {out}")
    return 0
