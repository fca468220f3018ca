"""``flowlearn train-labeler``: train a deep linearized assignment flow on a labelled image set.

``--data FILE.npz`` holds ``images`` ``(N, H, W[, C])`` (uint8 or float) and ``labels`` ``(N, H, W)`` (int);
``--train 0-15 --val 16-19`` pick the training and validation (model selection) images.  Training uses
random crops with flips, validation the full images.  Writes to ``--out``: ``model.pt`` (weights only,
``torch.load(weights_only=True)``), ``model.json`` (config, channels, labels, input scale, parameters),
``history.json``, ``curves.png``, ``checkpoint.pt`` and ``manifest.json``; ``--resume`` continues.
Label new images with ``flowlearn label IMAGE --model DIR/model.pt``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

import numpy as np

from .._checks import UserInputError
from ..engine.distributed import world
from ..io import existing_file, save_figure, save_json
from ..learning.labeler import DATA_TERMS, LabelerConfig, LabelerTrainer, prepare_images, save_model
from ._flags import add_arguments, collect
from ._run import add_run_arguments, open_run, set_threads, write_labeling


def register(subparsers) -> None:
    p = subparsers.add_parser("train-labeler", help="train a deep linearized flow on a labelled image set",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, metavar="FILE.npz", help="npz with 'images' and 'labels'")
    p.add_argument("--train", required=True, metavar="RANGE", help="training images, e.g. 0-15 or 0,2,5-7")
    p.add_argument("--val", default="", metavar="RANGE", help="validation images for model selection (optional)")
    add_arguments(p, LabelerConfig, help={"T": "Integration time of each layer"}, choices={"data_term": DATA_TERMS})
    add_run_arguments(p)
    p.set_defaults(func=run)


def parse_range(text: str, n: int, option: str) -> list:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``, each index in ``[0, n)``."""
    out = []
    try:
        for part in filter(None, (t.strip() for t in str(text).split(","))):
            a, _, b = part.partition("-")
            out.extend(range(int(a), int(b if b else a) + 1))
    except ValueError:
        raise UserInputError(f"{option} must be indices like 0-15 or 0,3,5-7, got {text!r}") from None
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise UserInputError(f"{option} indices must be in 0..{n - 1}, got {bad[0]}")
    return out


def load_data(path):
    path = existing_file(path, "--data", "an .npz file with 'images' and 'labels'")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f or "labels" not in f:
                raise UserInputError(f"--data {str(path)!r} must hold arrays 'images' and 'labels', got {list(f)}")
            return prepare_images(f["images"], f["labels"])
    except (OSError, ValueError) as exc:
        if isinstance(exc, UserInputError):
            raise
        raise UserInputError(f"--data {str(path)!r} is not a readable .npz file ({exc})") from None


def run(args) -> int:
    config = LabelerConfig(**collect(args, LabelerConfig))
    set_threads(args.threads)
    images, labels, scale = load_data(args.data)
    train = parse_range(args.train, len(images), "--train")
    val = parse_range(args.val, len(images), "--val")
    if not train:
        raise UserInputError("--train must name at least one image")
    if config.crop > min(images.shape[1:3]):
        raise UserInputError(f"--crop must be at most the image size {tuple(images.shape[1:3])}, got {config.crop}")
    trainer = LabelerTrainer(config)
    with open_run(args, "train-labeler", asdict(config), seed=config.seed) as run_dir:
        out = run_dir.path
        model, res = trainer.fit(images, labels, train, val, checkpoint=out / "checkpoint.pt",
                                 resume=run_dir.resumed, overwrite=not run_dir.resumed)
        if world()[1] != 0:
            return 0
        meta = {"input_scale": scale, "value_range": [float(images.min()), float(images.max())],
                "parameters": model.num_parameters(), "train": train, "validation": val, "best": res.best,
                "seconds": res.stats["seconds"]}
        save_model(out / "model.pt", model, meta)
        save_json(out / "model.json", {"config": asdict(config), "channels": model.channels,
                                       "num_labels": model.num_labels, **meta})
        save_json(out / "history.json", res.history)
        save_figure(out / "curves.png", _curves(res.history))
        print(f"trained {res.stats['iterations']} steps in {res.stats['seconds']:.1f} s, "
              f"{model.num_parameters()} parameters; best validation pixel error "
              f"{res.best['validation_error']:.2f} % (step {res.best['iteration']})")
        print(f"wrote {out}/model.pt, model.json, history.json, curves.png")
    return 0


def _curves(history):
    import matplotlib.pyplot as plt   # the user's backend is left as it is (headless: matplotlib picks Agg)

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot([h["iteration"] for h in history], [h["loss"] for h in history], label="training loss (KL)")
    ax[0].set_xlabel("step")
    ax[0].set_title("training loss")
    ax[0].legend()
    val = [h for h in history if h.get("validation_error") is not None]
    ax[1].plot([h["iteration"] for h in val], [h["validation_error"] for h in val], "o-",
               label="validation pixel error %")
    ax[1].set_xlabel("step")
    ax[1].set_title("validation (full images)")
    ax[1].legend()
    fig.suptitle("train-labeler: deep linearized assignment flow")
    fig.tight_layout()
    return fig


def label_with_model(args, image) -> int:
    """``flowlearn label IMAGE --model DIR/model.pt``: the trained flow on the full image (``read_image`` output)."""
    import time

    import torch

    from ..evaluation import label_error
    from ..io import check_out_dir
    from ..learning.labeler import load_model
    from ._inputs import load_label_map

    model, meta = load_model(existing_file(args.model, "--model", "a model.pt written by train-labeler"),
                             what="--model file")
    H, W, C = image.shape
    if C != model.channels:
        raise UserInputError(f"image {str(args.image)!r} has {C} channel(s), the model was trained on {model.channels}")
    x = image / meta["input_scale"] if str(args.image).lower().endswith(".npy") else image
    lo, hi = meta["value_range"]
    margin = 0.25 * max(hi - lo, 1e-6)
    if float(x.min()) < lo - margin or float(x.max()) > hi + margin:
        raise UserInputError(f"image {str(args.image)!r} has values in [{float(x.min()):.3g}, {float(x.max()):.3g}] "
                             f"after scaling, the model was trained on [{lo:.3g}, {hi:.3g}]")
    truth = None if args.truth is None else load_label_map(args.truth, (H, W), option="--truth")
    check_out_dir(args.out, name="--out")
    t0 = time.perf_counter()
    labels = model.predict(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(np.int64)
    seconds = time.perf_counter() - t0
    with open_run(args, "label") as run_dir:
        out = run_dir.path
        metrics = {"image": str(args.image), "model": str(args.model), "layers": model.config.layers,
                   "num_labels": model.num_labels, "parameters": model.num_parameters(), "seconds": seconds}
        if truth is not None:
            metrics["pixel_error_percent"] = label_error(labels, truth)
            metrics["label_error_percent"] = metrics["pixel_error_percent"]
        write_labeling(out, x, labels, metrics)
        msg = f"deep linearized flow ({model.config.layers} layers): {seconds:.2f} s"
        if truth is not None:
            msg += f", pixel error {metrics['pixel_error_percent']:.2f} %"
        print(msg)
        print(f"wrote {out}/labels.npy, labels.png, overlay.png, metrics.json")
    return 0
