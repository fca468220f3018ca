"""``flowlearn learn``: learn the weight patches of a linearized assignment flow (paper 000, Sect. 3).

Input: a random Voronoi image or an image with ground truth (``--image FILE --labels FILE.npy``, prototypes
by default the class means).  Every gradient method of ``--grad`` runs the same Riemannian gradient descent
from uniform patches.

Outputs in ``--out``: ``history_<grad>.json``, ``patches_<grad>.npy`` (H*W, size*size), ``labeling_<grad>.png``,
``labeling_uniform.png``, ``weights_<grad>.png`` (patches of the top-left pixels), ``curves.png`` (paper
Fig. 2), ``image.png``, ``labels.png``, ``summary.json`` and ``checkpoint_<grad>.pt`` (``--resume``).
"""

from __future__ import annotations

import argparse

import torch

from .._checks import UserInputError
from ..data import class_mean_prototypes, load_prototypes, make_voronoi, read_image
from ..data.voronoi import SCENARIOS
from ..experiments.weight_learning import learn_weights
from ..io import save_json
from ..learning import LearningProblem, WeightLearner
from ..linearized.methods import method_from_name
from ..linearized.methods import METHODS
from ._flags import add_arguments, collect
from ._run import add_run_arguments, load_label_map, open_run, set_threads

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: the command line's names of the methods (:mod:`flowlearn.linearized.methods`)
METHOD_NAMES = sorted(cls.name for cls in METHODS)
_LEARNER = ("optimizer", "iters", "checkpoint_every", "checkpoint_seconds")


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


def method(name: str, m: int, rank: int, step_size: float, *, expint_m: int | None = None,
           low_memory: bool = False):
    """The gradient method ``name`` with its options (``expint_m``: Krylov dimension of autodiff-expint, default
    ``m``); the rank of an ``m x m`` block cannot exceed ``m``."""
    if name == "lowrank" and rank > m >= 1:
        raise UserInputError(f"--rank must be <= --m (the Krylov dimension), got --rank {rank} and --m {m}")
    options = {"lowrank": {"m": m, "rank": rank, "recompute_forward": bool(low_memory)},
               "autodiff-expint": {"m": m if expint_m is None else expint_m},
               "autodiff-euler": {"step_size": step_size}}
    return method_from_name(name, **options.get(name, {}))


def register(subparsers) -> None:
    parser = subparsers.add_parser("learn", help="learn weight patches of the linearized assignment flow",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_arguments(parser)
    parser.add_argument("--grad", nargs="+", choices=METHOD_NAMES, default=["lowrank"],
                        help="gradient method(s); several give side-by-side curves (default lowrank)")
    parser.add_argument("--lr", type=float, default=None,
                        help="step size (default 0.05 for adam, 1.0 for rgd, whose step is lr * H * W)")
    add_arguments(parser, WeightLearner, only=_LEARNER, defaults={"optimizer": "adam"})
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
    opts = collect(args, WeightLearner, _LEARNER)
    lr = args.lr if args.lr is not None else {"adam": 0.05, "rgd": 1.0}.get(args.optimizer, 1.0)
    learners = {name: WeightLearner(method(name, args.m, args.rank, args.step_size, low_memory=args.low_memory),
                                    lr=lr, **opts) for name in args.grad}
    with open_run(args, "learn", {"lr": lr}, seed=args.seed) as run_dir:
        out = run_dir.path
        summary = learn_weights(out, problem, image, labels, protos, learners, resume=run_dir.resumed)
        if summary:
            save_json(out / "summary.json", {"command": "learn", "args": vars(args) | {"func": None}, **summary})
            print(f"pixel-wise rounding {summary['rounding_label_error']:.2f} %, uniform weights "
                  f"{summary['uniform']['label_error']:.2f} % -> {out}")
    return 0
