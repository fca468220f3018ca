"""``flowlearn predict``: train the weight-patch predictor of paper 000, Sect. 4.4, or label new images with it.

Training (without ``--model``): on Voronoi images or on the facades (``--facades FILE``, label ids made
consistent across the images by :func:`flowlearn.data.align_labels`; ``--facade-prototypes own``: every image
labelled with the class means of its own ground truth, the papers' setting).  Writes ``predictor.pt``,
``history.json``, ``curves.png``, ``results.json`` (label error % of pixel-wise rounding, uniform and predicted
weights per test image), ``labeling_{uniform,predicted}_<k>.png`` and ``weights_predicted_<k>.png``.

Labeling (``--model DIR/predictor.pt --image FILE [--labels FILE.npy]``): predicts the weight patches of the
image, runs the linearized flow and writes ``labeling.png``, ``labels.npy``, ``weights.png`` and
``result.json`` (with the label error when labels are given).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from .._checks import UserInputError, check_seed
from ..data import class_mean_prototypes, colorize_labels, load_facades, load_prototypes, make_voronoi, read_image
from ..data.alignment import align_labels
from ..engine.checkpoint import load_weights
from ..evaluation import label_error
from ..experiments.weight_learning import fit_predictor, predictor_setup
from ..io import existing_file, save_json, save_npy, save_png
from ..learning.plots import patch_mosaic
from ..learning.predictor import PatchPredictor, PredictorTrainer, make_sample, predict_tangent
from ._flags import add_arguments, collect
from ._run import add_run_arguments, check_run, load_label_map, open_run, set_threads

_TRAINER = ("lr", "iters", "checkpoint_every", "checkpoint_seconds")


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="train the weight-patch predictor or label images with it",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("boundary", "colors"), default="boundary")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--noise", type=float, default=None)
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--test-seeds", type=int, nargs="+", default=[100])
    parser.add_argument("--facades", default=None, help="facades .npz instead of Voronoi images")
    parser.add_argument("--train", type=int, nargs="+", default=[0, 1], help="facades training images")
    parser.add_argument("--test", type=int, nargs="+", default=[2], help="facades test images")
    parser.add_argument("--downsample", type=int, default=1, help="facades: keep every k-th pixel (default 1)")
    parser.add_argument("--facade-prototypes", choices=("train", "own"), default="train",
                        help="facades: class means of the training images (default) or of each image itself")
    add_arguments(parser, PatchPredictor, only=("num_prototypes", "sigma"))
    add_arguments(parser, PredictorTrainer, only=_TRAINER, defaults={"iters": 30})
    parser.add_argument("--rho", type=float, default=0.1)
    parser.add_argument("--T", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the k-means initialisation")
    parser.add_argument("--model", default=None, help="trained predictor.pt: label --image instead of training")
    parser.add_argument("--image", default=None, help="image to label with --model")
    parser.add_argument("--labels", default=None, help="ground truth .npy of --image (optional)")
    parser.add_argument("--prototypes", default=None,
                        help="with --model: prototypes FILE (.npy or text, J x C) instead of the model's")
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def _datasets(args):
    """``(train, test)`` lists of ``(image, labels, clean, prototypes)`` and the prototypes stored with the model."""
    if args.facades is None:
        tr, te = ([make_voronoi(args.size, scenario=args.scenario, noise=args.noise, seed=s) for s in seeds]
                  for seeds in (args.train_seeds, args.test_seeds))
        protos = tr[0].prototypes
        train, test = ([(v.image, v.labels, v.clean, protos) for v in vs] for vs in (tr, te))
        return train, test, protos
    data = load_facades(args.facades)
    for i in list(args.train) + list(args.test):
        if not 0 <= i < data.num_images:
            raise UserInputError(f"facades image index must be in 0..{data.num_images - 1}, got {i}")
    if args.downsample < 1:
        raise UserInputError(f"--downsample must be >= 1, got {args.downsample}")
    labels = align_labels(data.images, data.labels).labels
    k = args.downsample
    imgs, labs = data.images[:, ::k, ::k], labels[:, ::k, ::k]
    J = int(labs.max()) + 1
    protos = class_mean_prototypes(np.concatenate([imgs[i] for i in args.train], 0),
                                   np.concatenate([labs[i] for i in args.train], 0), J)

    def item(i):  # the label-coloured image gives the "noise-free" windows
        own = class_mean_prototypes(imgs[i], labs[i], J) if args.facade_prototypes == "own" else protos
        return imgs[i], labs[i], own[labs[i]], own

    return [item(i) for i in args.train], [item(i) for i in args.test], protos


def _train(args) -> int:
    train, test, protos = _datasets(args)
    set_threads(args.threads)
    check_run(args, "predict")   # an earlier run in --out is refused before the samples are made
    trainer = PredictorTrainer(**collect(args, PredictorTrainer, _TRAINER))
    check_seed("--seed", args.seed)
    pred, tr, te = predictor_setup(train, test, num_prototypes=args.num_prototypes, sigma=args.sigma, rho=args.rho,
                                   T=args.T, seed=args.seed)
    with open_run(args, "predict", seed=args.seed) as run_dir:
        out = run_dir.path
        res, rows = fit_predictor(out, trainer, pred, tr, te, test, resume=run_dir.resumed, extra={
            "prototypes": torch.as_tensor(np.asarray(protos)), "rho": args.rho, "T": args.T})
        if rows:
            save_json(out / "results.json", {"args": {k: v for k, v in vars(args).items() if k != "func"},
                                             "label_aligned": args.facades is not None, "test": rows,
                                             "train_errors": res.final["train_errors"],
                                             "seconds": res.stats["seconds"]})
    return 0


def _label(args) -> int:
    if args.image is None:
        raise UserInputError("--model needs --image")
    state = load_weights(existing_file(args.model, "--model", "a saved model (.pt)"),
                         keys=("state", "num_prototypes", "feature_dim", "prototypes", "rho", "T"),
                         what="--model file")
    image = read_image(args.image)
    labels = None if args.labels is None else load_label_map(args.labels, image.shape[:2], option="--labels")
    protos = np.asarray(torch.as_tensor(state["prototypes"]).numpy())
    if args.prototypes is not None:
        protos = load_prototypes(args.prototypes, channels=image.shape[-1] if image.ndim == 3 else 1)
    check_run(args, "predict --model")
    s = make_sample(image, np.zeros(image.shape[:2], dtype=np.int64) if labels is None else labels, protos,
                    rho=state["rho"], T=state["T"])
    pred = PatchPredictor(state["num_prototypes"], feature_dim=state["feature_dim"])
    if s.features.shape[1] != pred.feature_dim:
        raise UserInputError(f"image has {s.features.shape[1]} window features, the model expects {pred.feature_dim}")
    pred.load_state_dict(state["state"])
    with open_run(args, "predict --model") as run_dir, torch.no_grad():
        out, patches = run_dir.path, pred(s.features)
        H, W = image.shape[:2]
        lab = predict_tangent(s.problem, patches).argmax(-1).reshape(H, W).numpy()
        save_npy(out / "labels.npy", lab)
        save_png(out / "labeling.png", colorize_labels(lab))
        save_png(out / "weights.png", patch_mosaic(patches, H, W, 3))
        result = {"model": args.model, "image": args.image}
        if labels is not None:
            result["label_error"] = label_error(lab, labels)
            print(f"label error {result['label_error']:.2f} %")
        save_json(out / "result.json", result)
    return 0


def run(args) -> int:
    return _label(args) if args.model is not None else _train(args)
