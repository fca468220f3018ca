"""``flowlearn ising``: randomized assignment flow vs exact, mean field, Gibbs and loopy BP (paper 001, Table 1).

Any grid and any number of labels (``--labels C``: Potts), random fields on label 0 (``--field-noise``).  The
reference is exact when feasible, otherwise a long Gibbs run (row ``gibbs_reference``, KL columns null).

Writes to ``--out``: ``table.json`` (rows exact, randomized_af (``--rounding``), randomized_af_argmax,
mean_field, gibbs, loopy_bp; columns kl, energy, entropy, marginal_difference, seconds; details; the paper's
numbers), ``history.json``, ``samples.png`` (Fig. 2), ``marginals.png`` (Fig. 3), ``training_curve.png`` and
``checkpoint.pt`` (resumable).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from .._checks import check_memory
from ..engine.distributed import world
from ..experiments.table1 import IsingExperimentConfig, run_ising_experiment, save_table1_figures
from ..io import save_json
from ..pgm import gibbs
from ..randomized.sampling import DEFAULT_SAMPLING_MEMORY, per_sample_bytes

from ._flags import add_arguments, collect
from ._run import add_run_arguments, open_run, set_threads

_RENAME = {"iterations": "--iters", "mean_field_restarts": "--mf-restarts"}
_CHOICES = {"entropy_estimator": ("score", "support", "samples"), "rounding": ("random", "argmax"),
            "lr_schedule": ("constant", "cosine"), "dtype": ("float32", "float64"),
            "interaction": ("auto", "node", "sparse"), "drive_scale": ("none", "degree"),
            "reference": ("auto", "exact", "gibbs")}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ising", help="approximate a grid Gibbs distribution with a randomized assignment flow (Table 1)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, IsingExperimentConfig, rename=_RENAME, choices=_CHOICES)
    add_run_arguments(p)
    p.set_defaults(func=run)


def estimate_bytes(config: IsingExperimentConfig) -> float:
    """What ``flowlearn ising`` allocates above the started interpreter (measured in docs/reliability.md):
    60 MB of libraries, then the largest of its stages, which run one after the other: a training step (7 copies
    of the interaction's ``P`` parameters per sample of the batch), the evaluation (1.5 times a sampling chunk),
    the reference (transfer-matrix messages, enumerated configurations or kept Gibbs samples), the Gibbs baseline's
    kept samples and mean field (``mean_field_restarts`` models of ``n x c``)."""
    kept = getattr(gibbs, "MAX_KEPT_ENTRIES", 2**62)   # the samples a Gibbs run stores (int64)
    n, c = config.rows * config.cols, config.labels
    itemsize = 4 if config.dtype == "float32" else 8
    sparse = config.resolved_interaction == "sparse"
    P = 2 * (config.rows * (config.cols - 1) + config.cols * (config.rows - 1)) + n if sparse else n * n
    per_sample = per_sample_bytes(P, n, c, itemsize)
    stages = [7.0 * config.batch_size * P * itemsize,
              1.5 * per_sample * min(config.eval_samples, max(1, DEFAULT_SAMPLING_MEMORY // per_sample)),
              8.0 * min(config.gibbs_samples * n, kept),
              40.0 * config.mean_field_restarts * n * c]
    method = config.exact_method()
    width, length = min(config.rows, config.cols), max(config.rows, config.cols)
    if method == "transfer":
        stages.append(4 * 8.0 * length * float(c) ** width)
    elif method == "enumeration":
        stages.append(3 * 8.0 * float(c) ** n * n)
    else:
        stages.append(8.0 * min(config.reference_samples * n, kept))
    return 60e6 + max(stages)


def run(args) -> int:
    config = IsingExperimentConfig(**collect(args, IsingExperimentConfig))
    set_threads(args.threads)
    check_memory(f"ising on a {config.rows}x{config.cols} grid with {config.labels} labels (batch "
                 f"{config.batch_size})", estimate_bytes(config),
                 hint="use a smaller grid, --batch-size or --interaction sparse")
    with open_run(args, "ising", asdict(config), seed=config.seed) as run_dir:
        out = run_dir.path
        result = run_ising_experiment(config, checkpoint_path=out / "checkpoint.pt", resume=args.resume,
                                      overwrite=args.overwrite)
        if world()[1] != 0:
            return 0
        ref = result.reference_name
        save_table1_figures(out, result, config)
        save_json(out / "history.json", result.training.history)
        save_json(out / "table.json", {**result.to_json(), "figures": {
            "samples.png": "rows: mean field, randomized AF, Gibbs (Fig. 2)",
            "marginals.png": f"P(label 0): {ref.replace('_', ' ')}, randomized AF, mean field (Fig. 3)"}})
    print(f"{'model':<22}{'KL':>9}{'energy':>9}{'entropy':>9}{'marg.diff':>10}{'seconds':>9}")
    for name, row in result.table.items():
        kl = f"{row['kl']:>9.4f}" if row["kl"] is not None else f"{'-':>9}"
        print(f"{name:<22}{kl}{row['energy']:>9.4f}{row['entropy']:>9.4f}"
              f"{row['marginal_difference']:>10.4f}{row['seconds']:>9.1f}")
    af = result.extra["randomized_af"]
    print(f"integral samples (every node max prob >= {1 - af['integral_tolerance']:g}): "
          f"{100 * af['integral_fraction']:.1f} %")
    if ref != "exact":
        r = result.extra["reference"]
        print(f"reference: Gibbs, {r['samples']} samples, marginal standard error mean "
              f"{r.get('marginal_standard_error_mean', float('nan')):.2g} (no exact reference: KL not available)")
    print(f"wrote {out / 'table.json'}")
    return 0
