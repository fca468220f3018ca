"""``flowlearn predict``: train the weight-patch predictor of paper 000, Sect. 4.4, or label new images with it.

Training (``--out DIR`` without ``--model``): on Voronoi images (``--scenario``, ``--size``,
``--train-seeds``, ``--test-seeds``) or on the facades (``--facades FILE``, ``--train 0 1``, ``--test
2``; label ids are first made consistent across the images with
:func:`flowlearn.data.align_labels`).  ``--facade-prototypes train`` (default) labels every image with
the class means of the training images -- a test of colour transfer as well as of the weights;
``--facade-prototypes own`` gives every image the class means of its own ground truth, the setting of the
papers, where the label prototypes are part of the labeling problem and only the weights are learned.
Writes ``predictor.pt`` (model + settings + prototypes), ``history.json``, ``curves.png``,
``results.json`` (label error % of pixel-wise rounding, uniform weights and predicted weights per
test image), ``labeling_{uniform,predicted}_<k>.png`` and ``weights_predicted_<k>.png``.

Labeling (``--model DIR/predictor.pt --image FILE [--labels FILE.npy] --out DIR``): predicts the
weight patches of an unseen image, runs the linearized flow and writes ``labeling.png``,
``labels.npy``, ``weights.png`` and ``result.json`` (with the label error when labels are given);
``--prototypes FILE`` replaces the prototypes stored with the model.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from .._checks import UserInputError, check_seed
from ..data import (
    class_mean_prototypes,
    colorize_labels,
    load_facades,
    load_prototypes,
    make_voronoi,
    nearest_prototype_labels,
    read_image,
)
from ..data.alignment import align_labels
from ..engine.checkpoint import load_weights
from ..engine.distributed import world
from ..evaluation import label_error
from ..io import existing_file, save_json, save_npy, save_png, save_weights
from ..learning.plots import patch_mosaic, plot_curves
from ..learning.predictor import (
    PatchPredictor,
    PredictorTrainer,
    clean_windows,
    make_sample,
    predict_tangent,
)
from ._flags import add_arguments, collect
from ._inputs import load_label_map
from ._run import add_run_arguments, check_run, open_run, set_threads

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
        mk = lambda s: make_voronoi(args.size, scenario=args.scenario, noise=args.noise, seed=s)  # noqa: E731
        tr, te = [mk(s) for s in args.train_seeds], [mk(s) for s in args.test_seeds]
        protos = tr[0].prototypes
        return ([(v.image, v.labels, v.clean, protos) for v in tr],
                [(v.image, v.labels, v.clean, protos) for v in te], protos)
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
    kw = {"rho": args.rho, "T": args.T}
    tr = [make_sample(img, lab, pr, **kw) for img, lab, _, pr in train]
    te = [make_sample(img, lab, pr, **kw) for img, lab, _, pr in test]
    wins = [clean_windows(c, lab) for _, lab, c, _ in train]
    pred = PatchPredictor(args.num_prototypes, feature_dim=tr[0].features.shape[1], sigma=args.sigma)
    check_seed("--seed", args.seed)
    pred.initialize(torch.cat([w[0] for w in wins]), torch.cat([w[1] for w in wins]), seed=args.seed)
    with open_run(args, "predict", seed=args.seed) as run_dir:
        return _train_and_test(args, run_dir, trainer, pred, tr, te, test, protos)


def _train_and_test(args, run_dir, trainer, pred, tr, te, test, protos) -> int:
    out = run_dir.path
    res = trainer.fit(pred, tr, te, checkpoint=out / "checkpoint.pt", resume=run_dir.resumed,
                      overwrite=not run_dir.resumed)
    if world()[1] != 0:
        return 0
    save_weights(out / "predictor.pt", {"state": pred.state_dict(), "num_prototypes": args.num_prototypes,
                                        "feature_dim": tr[0].features.shape[1],
                                        "prototypes": torch.as_tensor(np.asarray(protos)),
                                        "rho": args.rho, "T": args.T})
    save_json(out / "history.json", res.history)
    hist = [dict(h, label_error=h["validation_error"]) for h in res.history if h["validation_error"] is not None]
    plot_curves(out / "curves.png", {"train": res.history, "test": hist}, title="parameter predictor")
    rows = []
    for k, ((img, lab, _, pr), s) in enumerate(zip(test, te)):
        H, W = lab.shape
        uni = predict_tangent(s.problem, s.problem.weights.patches).argmax(-1)
        with torch.no_grad():
            patches = pred(s.features)
        prd = predict_tangent(s.problem, patches).argmax(-1)
        rows.append({"test_image": k, "rounding": label_error(nearest_prototype_labels(img, pr), lab),
                     "uniform": label_error(uni.reshape(H, W).numpy(), lab),
                     "predicted": label_error(prd.reshape(H, W).numpy(), lab)})
        save_png(out / f"labeling_uniform_{k}.png", colorize_labels(uni.reshape(H, W).numpy()))
        save_png(out / f"labeling_predicted_{k}.png", colorize_labels(prd.reshape(H, W).numpy()))
        save_png(out / f"weights_predicted_{k}.png", patch_mosaic(patches, H, W, 3))
        print(f"test image {k}: rounding {rows[-1]['rounding']:.2f} %, uniform {rows[-1]['uniform']:.2f} %, "
              f"predicted {rows[-1]['predicted']:.2f} %")
    save_json(out / "results.json", {"args": {k: v for k, v in vars(args).items() if k != "func"},
                                     "label_aligned": args.facades is not None, "test": rows,
                                     "train_errors": res.final["train_errors"], "seconds": res.stats["seconds"]})
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
    with open_run(args, "predict --model") as run_dir:
        return _label_image(args, run_dir.path, pred, s, image, labels)


def _label_image(args, out, pred, s, image, labels) -> int:
    with torch.no_grad():
        patches = pred(s.features)
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
