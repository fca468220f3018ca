"""``flowlearn ising``: randomized assignment flow vs exact, mean field, Gibbs and loopy BP (paper 001, Table 1).

Writes to ``--out``: ``table.json`` (rows exact, randomized_af, mean_field, gibbs, loopy_bp;
columns kl, energy, entropy, marginal_difference, seconds; the paper's numbers in ``paper``),
``history.json``, ``samples.png`` (Fig. 2), ``marginals.png`` (Fig. 3), ``training_curve.png``
and ``checkpoint.pt`` (resumable).
"""

from __future__ import annotations

import argparse

from flowlearn.randomized import IsingExperimentConfig, run_ising_experiment

from .._checks import UserInputError


def register(subparsers) -> None:
    d = IsingExperimentConfig()
    p = subparsers.add_parser(
        "ising", help="approximate a grid Gibbs distribution with a randomized assignment flow (Table 1)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=d.rows, help="grid rows (default %(default)s)")
    p.add_argument("--cols", type=int, default=d.cols, help="grid columns (default %(default)s)")
    p.add_argument("--field", type=float, default=d.field,
                   help="class 0 has unary energy -FIELD on the left column, +FIELD on the right (default %(default)s)")
    p.add_argument("--coupling", type=float, default=d.coupling,
                   help="pairwise energy when neighbouring labels differ (default %(default)s; the paper's "
                        "text says 0.7 but its Table 1 needs 2.1)")
    p.add_argument("--iters", type=int, default=d.iterations, help="training iterations (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="samples per iteration (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (default %(default)s)")
    p.add_argument("--init-rank", type=int, default=d.init_rank,
                   help="low-rank Gaussian factors of the initial point; 0 = the paper's flow (default %(default)s)")
    p.add_argument("--init-noise", type=float, default=d.init_noise,
                   help="std of independent initial-point noise; 0 = none (default %(default)s)")
    p.add_argument("--entropy-estimator", choices=("score", "support", "samples"), default=d.entropy_estimator,
                   help="entropy gradient: score (default), support, or samples = the paper's eq. (22)")
    p.add_argument("--eval-samples", type=int, default=d.eval_samples,
                   help="samples for evaluating the flow (default %(default)s)")
    p.add_argument("--rounding", choices=("argmax", "random"), default=d.rounding,
                   help="how soft flow end points become integer samples (default %(default)s)")
    p.add_argument("--mf-restarts", type=int, default=d.mean_field_restarts,
                   help="mean-field random restarts (default %(default)s)")
    p.add_argument("--gibbs-samples", type=int, default=d.gibbs_samples,
                   help="Gibbs samples (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is fastest for these small tensors)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from flowlearn.io import ensure_out_dir, save_json
    from flowlearn.randomized import PAPER_TABLE1
    from flowlearn.randomized.plots import (
        save_marginals_png,
        save_samples_png,
        save_training_curve,
    )

    config = IsingExperimentConfig(
        rows=args.rows, cols=args.cols, field=args.field, coupling=args.coupling, iterations=args.iters,
        batch_size=args.batch_size, lr=args.lr, init_rank=args.init_rank, init_noise=args.init_noise,
        entropy_estimator=args.entropy_estimator, eval_samples=args.eval_samples, rounding=args.rounding,
        mean_field_restarts=args.mf_restarts, gibbs_samples=args.gibbs_samples, seed=args.seed)
    if args.threads is not None:
        if args.threads < 1:
            raise UserInputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    out = ensure_out_dir(args.out, name="--out")
    result = run_ising_experiment(config, checkpoint_path=out / "checkpoint.pt", resume=not args.no_resume)
    grid = result.model.grid_shape
    save_samples_png(out / "samples.png",
                     {k: result.samples[k] for k in ("mean_field", "randomized_af", "gibbs")}, grid)
    save_marginals_png(out / "marginals.png",
                       {k: result.marginals[k] for k in ("exact", "randomized_af", "mean_field")}, grid)
    reference = {"objective": {"mean field": result.table["mean_field"]["kl"]}}
    if (config.rows, config.cols, config.field, config.coupling) == (3, 8, 3.0, 2.1):
        reference["objective"]["paper AF"] = PAPER_TABLE1["randomized_af"]["kl"]
    save_training_curve(out / "training_curve.png", result.training.history, reference=reference)
    save_json(out / "history.json", result.training.history)
    save_json(out / "table.json", {**result.to_json(), "figures": {
        "samples.png": "rows: mean field, randomized AF, Gibbs (Fig. 2)",
        "marginals.png": "P(class 0): exact, randomized AF, mean field (Fig. 3)"}})
    print(f"{'model':<14}{'KL':>9}{'energy':>9}{'entropy':>9}{'marg.diff':>10}{'seconds':>9}")
    for name, row in result.table.items():
        print(f"{name:<14}{row['kl']:>9.4f}{row['energy']:>9.4f}{row['entropy']:>9.4f}"
              f"{row['marginal_difference']:>10.4f}{row['seconds']:>9.1f}")
    print(f"wrote {out / 'table.json'}")
    return 0
