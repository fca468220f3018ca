"""``flowlearn gfe``: gradient flow encoding -- ``train`` one model, ``compare`` data efficiency."""

from __future__ import annotations

import argparse

import torch

from .._checks import UserInputError
from ..encoding import (
    DATASETS,
    MODELS,
    OPTIMIZERS,
    SOLVERS,
    TrainConfig,
    Trainer,
    compare,
    load_dataset,
    plot_curves,
    reconstructions_for,
    save_reconstruction_grid,
    training_subset,
)
from ..encoding.adjoint import ADJOINTS
from ..io import ensure_out_dir, save_checkpoint, save_json
from ..progress import seed_everything


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits, built in)")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST/FashionMNIST IDX files")
    p.add_argument("--val-size", type=int, default=None, help="use a fixed subset of this many validation images")
    p.add_argument("--optimizer", default="rmsprop", help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 5e-4 rmsprop, 1e-3 adam)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=50, help="optimizer steps between validation evaluations")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the small networks run fastest single-threaded)")
    p.add_argument("--out", required=True, help="output directory")


def register(subparsers) -> None:
    parser = subparsers.add_parser("gfe", help="gradient flow encoding (decoder-only autoencoders)",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="gfe_command", metavar="ACTION")
    sub.required = True

    train = sub.add_parser("train", help="train one GFE decoder or conventional AE")
    _common(train)
    train.add_argument("--model", default="gfe", help=f"one of {', '.join(MODELS)}")
    train.add_argument("--solver", default="amd", help=f"one of {', '.join(SOLVERS)}")
    train.add_argument("--adjoint", default="approx", help=f"one of {', '.join(ADJOINTS)}")
    train.add_argument("--train-size", type=int, default=None, help="fixed training subset of N images (default all)")
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--t1", type=float, default=None,
                       help="final time of fixed-grid solvers (default 1000; nesterov 100)")
    train.add_argument("--steps", type=int, default=60, help="intervals of the fixed grid")
    train.add_argument("--grid", default="log", help="log or linear")
    train.set_defaults(func=run_train)

    cmp_ = sub.add_parser("compare", help="data-efficiency table: AE vs GFE-amd vs Mixed")
    _common(cmp_)
    cmp_.add_argument("--train-sizes", required=True, help="comma-separated sizes, e.g. 50,200,1437")
    cmp_.add_argument("--seeds", type=int, default=3)
    cmp_.add_argument("--images", type=int, default=10000, help="images seen per run")
    cmp_.add_argument("--full-images", type=int, default=30000,
                      help="images seen per run when the size is the whole training pool")
    cmp_.add_argument("--ae-factor", type=int, default=1,
                      help="the AE sees this many times more images than the GFE (paper: 12 epochs vs 1)")
    cmp_.set_defaults(func=run_compare)


def _sizes(text: str) -> list:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise UserInputError(f"--train-sizes must be comma-separated integers, got {text!r}") from exc
    if not sizes:
        raise UserInputError(f"--train-sizes must name at least one size, got {text!r}")
    return sizes


def _set_threads(threads: int) -> None:
    if threads < 1:
        raise UserInputError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def run_train(args) -> int:
    cfg = TrainConfig(model=args.model, solver=args.solver, adjoint=args.adjoint, optimizer=args.optimizer,
                      lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, eval_every=args.eval_every,
                      seed=args.seed, t1=args.t1, steps=args.steps, grid=args.grid)
    _set_threads(args.threads)
    data = load_dataset(args.dataset, args.data_dir, val_size=args.val_size)
    idx = training_subset(data, args.train_size, args.seed)
    out = ensure_out_dir(args.out)
    seed_everything(args.seed)
    result = Trainer(cfg).fit(data, idx, out_dir=out)
    label = "AE" if args.model == "ae" else f"GFE-{args.solver}"
    plot_curves(out / "curves.png", {label: result.history})
    save_reconstruction_grid(out / "reconstructions.png", reconstructions_for({label: result.module}, data.val[:16]),
                             data.image_shape)
    save_json(out / "history.json", result.history)
    metrics = {"dataset": args.dataset, "config": cfg.__dict__, "val_bce": result.val_bce,
               "mixed_val_bce": result.mixed_val_bce, "stats": result.stats}
    save_json(out / "metrics.json", metrics)
    save_checkpoint(out / "model.pt", {"config": cfg.__dict__, "state_dict": result.module.state_dict()})
    line = f"{label} on {args.dataset} (N={len(idx)}): validation BCE {result.val_bce:.4f}"
    if result.mixed_val_bce is not None:
        line += f", mixed (AMD encoding) {result.mixed_val_bce:.4f}"
    print(line + f"; wrote {out}")
    return 0


def run_compare(args) -> int:
    sizes = _sizes(args.train_sizes)
    base = TrainConfig(optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size, eval_every=args.eval_every)
    _set_threads(args.threads)
    data = load_dataset(args.dataset, args.data_dir, val_size=args.val_size)
    for s in sizes:
        if not 1 <= s <= len(data.train):
            raise UserInputError(f"--train-sizes entries must lie in [1, {len(data.train)}] for {args.dataset}, got {s}")
    table = compare(data, sizes, args.seeds, args.out, base=base, images=args.images, full_images=args.full_images,
                    ae_factor=args.ae_factor)
    print(f"{'N':>6} {'AE':>16} {'GFE-amd':>16} {'Mixed':>16} {'GFE vs AE':>10}")
    for size, row in table["rows"].items():
        cells = [f"{row[m]['mean']:.4f}+-{row[m]['std']:.4f}" if row[m]["mean"] is not None else "-"
                 for m in ("AE", "GFE-amd", "Mixed")]
        rel = row.get("gfe_vs_ae_relative")
        print(f"{size:>6} " + " ".join(f"{c:>16}" for c in cells)
              + (f" {100 * rel:>+9.1f}%" if rel is not None else ""))
    print(f"wrote {args.out}/table.json")
    return 0
