"""``flowlearn learn``: learn the weight patches of a linearized assignment flow (paper 000, Sect. 3).

Input: a random Voronoi image (``--scenario boundary|colors``, ``--size``, ``--noise``, ``--seed``) or
an image with ground truth (``--image FILE --labels FILE.npy`` [``--prototypes FILE``], default
prototypes: class means).  One or several gradient methods (``--grad lowrank exact autodiff-euler
autodiff-expint``) each run the same Riemannian gradient descent from uniform patches.

Outputs in ``--out``: ``history_<grad>.json`` (loss, label error %, seconds per iteration),
``patches_<grad>.npy`` (learned weight patches, (H*W, size*size)), ``labeling_<grad>.png`` and
``labeling_uniform.png``, ``weights_<grad>.png`` (mosaic of the patches of the top-left pixels),
``curves.png`` (loss / label error of all methods side by side, paper Fig. 2), ``image.png``,
``labels.png``, ``summary.json`` and ``checkpoint_<grad>.pt`` (``--resume`` continues from it).
"""

from __future__ import annotations

import argparse

import torch

from .._checks import UserInputError
from ..data import (
    class_mean_prototypes,
    colorize_labels,
    load_prototypes,
    make_voronoi,
    nearest_prototype_labels,
    read_image,
)
from ..data.images import to_display
from ..data.voronoi import SCENARIOS
from ..engine.distributed import world
from ..evaluation import label_error
from ..io import save_json, save_npy, save_png
from ..engine import spec
from ..learning import LearningProblem, WeightLearner
from ..learning.plots import patch_mosaic, plot_curves
from ..linearized import method_from_name
from ..linearized.methods import METHODS
from ._flags import add_arguments, collect
from ._inputs import load_label_map
from ._run import add_run_arguments, open_run, set_threads

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: the command line's names of the methods (:mod:`flowlearn.linearized.methods`)
METHOD_NAMES = sorted(cls.name for cls in METHODS)


def add_problem_arguments(parser) -> None:
    """Arguments shared by ``learn`` and ``gradcheck``: the image and the flow."""
    parser.add_argument("--scenario", choices=SCENARIOS, default="boundary",
                        help="Voronoi scenario when no --image is given (default boundary)")
    parser.add_argument("--size", type=int, default=64, help="Voronoi image size (default 64)")
    parser.add_argument("--noise", type=float, default=None, help="Voronoi noise std (default per scenario)")
    parser.add_argument("--seed", type=int, default=0, help="Voronoi seed (default 0)")
    parser.add_argument("--image", default=None, help="image file (PNG/JPEG/.npy) instead of a Voronoi image")
    parser.add_argument("--labels", default=None, help="ground-truth labels .npy (H, W), with --image")
    parser.add_argument("--prototypes", default=None, help="prototypes file (J, C); default: class means")
    parser.add_argument("--rho", type=float, default=0.1, help="data scale rho (default 0.1)")
    parser.add_argument("--T", type=float, default=5.0, help="integration time T (default 5)")
    parser.add_argument("--tau", type=float, default=0.0, help="regularization strength tau (default 0)")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float64")


def load_problem(args):
    """``(problem, image, labels, prototypes)`` from the parsed arguments; raises ValueError before any output."""
    if args.image is None:
        if args.labels is not None:
            raise UserInputError("--labels needs --image")
        v = make_voronoi(args.size, scenario=args.scenario, noise=args.noise, seed=args.seed)
        image, labels, protos = v.image, v.labels, v.prototypes
    else:
        if args.labels is None:
            raise UserInputError("--image needs --labels (an .npy file of shape (H, W))")
        image = read_image(args.image)
        labels = load_label_map(args.labels, image.shape[:2], option="--labels")
        protos = (class_mean_prototypes(image, labels) if args.prototypes is None
                  else load_prototypes(args.prototypes, channels=image.shape[2]))
    problem = LearningProblem.from_image(image, labels, protos, rho=args.rho, T=args.T, tau=args.tau,
                                         dtype=_DTYPES[args.dtype])
    return problem, image, labels, protos


def lowrank_options(m: int, rank: int, recompute_forward: bool = False) -> dict:
    """Options of the ``lowrank`` method; the rank of an ``m x m`` block cannot exceed ``m``."""
    if rank > m >= 1:
        raise UserInputError(f"--rank must be <= --m (the Krylov dimension), got --rank {rank} and --m {m}")
    return {"m": m, "rank": rank, "recompute_forward": bool(recompute_forward)}


def _method_options(args, name: str) -> dict:
    if name == "lowrank":
        return lowrank_options(args.m, args.rank, args.low_memory)
    if name == "autodiff-expint":
        return {"m": args.m}
    if name == "autodiff-euler":
        return {"step_size": args.step_size}
    return {}


def register(subparsers) -> None:
    parser = subparsers.add_parser("learn", help="learn weight patches of the linearized assignment flow",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_arguments(parser)
    parser.add_argument("--grad", nargs="+", choices=METHOD_NAMES, default=["lowrank"],
                        help="gradient method(s); several give side-by-side curves (default lowrank)")
    parser.add_argument("--lr", type=float, default=None,
                        help="step size (default 0.05 for adam, 1.0 for rgd, whose step is lr * H * W)")
    add_arguments(parser, WeightLearner, only=("optimizer", "iters", "checkpoint_every", "checkpoint_seconds"),
                  defaults={"optimizer": "adam"})
    parser.add_argument("--m", type=int, default=10, help="Krylov dimension (lowrank, autodiff-expint)")
    parser.add_argument("--rank", type=int, default=1, help="rank of the low-rank gradient (default 1)")
    parser.add_argument("--step-size", type=float, default=0.1, help="Euler step (autodiff-euler, default 0.1)")
    parser.add_argument("--low-memory", action="store_true",
                        help="lowrank: keep one Krylov basis at a time (about half the memory, m more products)")
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    set_threads(args.threads)
    problem, image, labels, protos = load_problem(args)
    methods = {name: method_from_name(name, **_method_options(args, name)) for name in args.grad}
    opts = collect(args, WeightLearner, ("optimizer", "iters", "checkpoint_every", "checkpoint_seconds"))
    lr = args.lr if args.lr is not None else {"adam": 0.05, "rgd": 1.0}.get(args.optimizer, 1.0)
    learners = {name: WeightLearner(m, lr=lr, **opts) for name, m in methods.items()}
    with open_run(args, "learn", {"lr": lr}, seed=args.seed) as run_dir:
        return _learn(args, run_dir, problem, image, labels, protos, methods, learners)


def _learn(args, run_dir, problem, image, labels, protos, methods, learners) -> int:
    out = run_dir.path
    if world()[1] != 0:  # under torchrun: the same deterministic steps on every rank, rank 0 writes
        for name, learner in learners.items():
            learner.fit(problem, checkpoint=out / f"checkpoint_{name}.pt", resume=run_dir.resumed,
                        overwrite=not run_dir.resumed)
        return 0
    H, W = labels.shape
    size = problem.weights.size
    uniform = learners[args.grad[0]].evaluate(problem, problem.weights.patches)
    rounding = label_error(nearest_prototype_labels(image, protos), labels)
    save_png(out / "image.png", to_display(image))
    save_png(out / "labels.png", colorize_labels(labels))
    histories, summary = {}, {}
    for name, learner in learners.items():
        res = learner.fit(problem, checkpoint=out / f"checkpoint_{name}.pt", resume=run_dir.resumed,
                        overwrite=not run_dir.resumed)
        histories[name] = res.history
        save_json(out / f"history_{name}.json", res.history)
        save_npy(out / f"patches_{name}.npy", res.patches)
        r = problem.evaluate(res.patches, methods[name])
        save_png(out / f"labeling_{name}.png", colorize_labels(r.tangent.argmax(-1).reshape(H, W).cpu().numpy()))
        save_png(out / f"weights_{name}.png", patch_mosaic(res.patches, H, W, size))
        summary[name] = {"final": res.final, "seconds": res.stats["seconds"], "method": spec(methods[name])}
        print(f"learn {name}: loss {uniform['loss']:.4f} -> {res.final['loss']:.4f}, label error "
              f"{uniform['label_error']:.2f} % -> {res.final['label_error']:.2f} % in {res.stats['seconds']:.1f} s")
    r0 = problem.evaluate(problem.weights.patches, methods[args.grad[0]])
    save_png(out / "labeling_uniform.png", colorize_labels(r0.tangent.argmax(-1).reshape(H, W).cpu().numpy()))
    plot_curves(out / "curves.png", histories, title=f"{H}x{W}, J={problem.num_labels}")
    save_json(out / "summary.json", {"command": "learn", "args": vars(args) | {"func": None},
                                     "rounding_label_error": rounding, "uniform": uniform, "learned": summary})
    print(f"pixel-wise rounding {rounding:.2f} %, uniform weights {uniform['label_error']:.2f} % -> {out}")
    return 0
