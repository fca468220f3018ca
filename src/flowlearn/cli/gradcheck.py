"""``flowlearn gradcheck``: per-pixel accuracy of a gradient method against a reference (paper 000, Fig. 3).

At uniform weight patches (the first training step), computes the Riemannian gradient of the loss
with ``--method`` (default ``lowrank``, m = 10, r = 1) and with ``--reference`` (default
``autodiff-euler`` with the very small step ``--ref-step``), and writes to ``--out``:
``gradcheck.json`` (fraction of pixels with non-negligible gradient whose cosine is >= 0.9 and
>= 0.99, the same over all pixels, overall cosine, timings), ``gradcheck.png`` (cosine map,
cosine histogram, gradient-norm map), ``rank_study.json/.png`` (singular values of X, Fig. 4b);
with ``--studies`` also ``krylov_study`` and ``time_study`` (Figs. 4a, 4c; short training runs).
"""

from __future__ import annotations

import argparse

from .._checks import UserInputError
from ..linearized import method_from_name
from ..learning.diagnostics import (
    compare_gradients,
    integration_time_study,
    krylov_dimension_study,
    rank_study,
    save_study,
)
from ._run import add_run_arguments, open_run, set_threads
from .learn import METHOD_NAMES, add_problem_arguments, load_problem, lowrank_options


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


def _options(name, m, rank, step, ref_m):
    if name == "lowrank":
        return lowrank_options(m, rank)
    return {"autodiff-expint": {"m": ref_m}, "autodiff-euler": {"step_size": step}}.get(name, {})


def run(args) -> int:
    problem, _, _, _ = load_problem(args)
    method = method_from_name(args.method, **_options(args.method, args.m, args.rank, args.ref_step, args.m))
    reference = method_from_name(args.reference,
                                     **_options(args.reference, args.m, args.rank, args.ref_step, args.ref_m))
    if not args.min_norm >= 0:
        raise UserInputError(f"--min-norm must be >= 0, got {args.min_norm}")
    if args.studies and args.study_iters < 1:
        raise UserInputError(f"--study-iters must be >= 1 with --studies, got {args.study_iters}")
    set_threads(args.threads)
    with open_run(args, "gradcheck", seed=args.seed) as run_dir:
        return _study(args, run_dir.path, problem, method, reference)


def _study(args, out, problem, method, reference) -> int:
    patches = problem.weights.patches
    report, _, ref = compare_gradients(problem, patches, method, reference, min_relative_norm=args.min_norm)
    report["args"] = {k: v for k, v in vars(args).items() if k != "func"}
    save_study(out, "gradcheck", report)
    save_study(out, "rank_study", rank_study(problem, patches, ref, m=args.m))
    if args.studies:
        save_study(out, "krylov_study", krylov_dimension_study(problem, patches, ref, iters=args.study_iters))
        save_study(out, "time_study", integration_time_study(problem, iters=args.study_iters))
    print(f"gradcheck {report['method']} vs {report['reference']}: {100 * report['fraction_ge_0.9']:.2f} % of "
          f"{report['active_pixels']} active pixels have cosine >= 0.9, {100 * report['fraction_ge_0.99']:.2f} % "
          f">= 0.99 (overall cosine {report['overall_cosine']:.6f}; {report['seconds']:.2f} s vs "
          f"{report['reference_seconds']:.2f} s) -> {out}")
    return 0
