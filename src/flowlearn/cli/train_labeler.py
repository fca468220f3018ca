"""``flowlearn train-labeler``: train a deep linearized assignment flow on a labelled image set.

``--data FILE.npz`` holds ``images`` ``(N, H, W[, C])`` (uint8 or float) and ``labels`` ``(N, H, W)`` (int, the
classes 0..J-1 without gaps; a binary mask coded 0/255 is read as 0/1); ``--train 0-15 --val 16-19`` pick the
training and validation (model selection) images.  Training uses random crops with flips, validation the full
images.  Writes to ``--out``: ``model.pt`` (weights only, ``torch.load(weights_only=True)``), ``model.json``
(config, channels, labels, input scale, dtype and value range, parameters), ``history.json``, ``curves.png``,
``checkpoint.pt`` and ``manifest.json``; ``--resume`` continues.  Label new images with ``flowlearn label IMAGE
--model DIR/model.pt``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

import numpy as np
import torch

from .._checks import UserInputError, check_memory
from ..engine.distributed import world
from ..io import check_npz, existing_file, save_figure, save_json
from ..learning.labeler import DATA_TERMS, MODEL_BOUNDS, LabelerConfig, LabelerTrainer, prepare_images, save_model
from ._flags import add_arguments, collect
from ._run import add_run_arguments, open_run, set_threads


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
    """``(images, labels, input_scale, input_dtype)`` of ``--data`` (see :func:`check_label_values`)."""
    path = existing_file(path, "--data", "an .npz file with 'images' and 'labels'")
    # the headers before np.load allocates what they declare; then float32 images and int64 labels besides
    check_npz(path, f"--data {str(path)!r}", ("images", "labels"), extra_per_element=12.0, hint="use fewer images")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f or "labels" not in f:
                raise UserInputError(f"--data {str(path)!r} must hold arrays 'images' and 'labels', got {list(f)}")
            raw = f["images"]
            images, labels, scale = prepare_images(raw, f["labels"])
    except (OSError, ValueError) as exc:
        if isinstance(exc, UserInputError):
            raise
        raise UserInputError(f"--data {str(path)!r} is not a readable .npz file ({exc})") from None
    return images, check_label_values(labels, path), scale, str(raw.dtype)


def check_label_values(labels, path="--data"):
    """The labels must be the classes ``0..J-1`` (``2 <= J <= 1024``) without gaps; a binary mask coded 0/255
    is mapped to 0/1 (with a printed note).  Anything else is a one-line error, raised before a model or a
    run directory is made."""
    values = torch.unique(labels)
    if values.tolist() == [0, 255]:
        print(f"note: the labels of {str(path)!r} are coded 0/255 (a binary mask): read as 0/1")
        return (labels == 255).to(labels.dtype)
    shown = ", ".join(str(v) for v in values[:6].tolist()) + (", ..." if len(values) > 6 else "")
    J = len(values)
    if J < 2 or int(values[0]) != 0 or int(values[-1]) != J - 1 or J > MODEL_BOUNDS["num_labels"]:
        raise UserInputError(f"labels in {str(path)!r} must be the classes 0..J-1 without gaps (2 <= J <= "
                             f"{MODEL_BOUNDS['num_labels']}; a 0/255 mask is read as 0/1), got the values {shown}")
    return labels


def run(args) -> int:
    config = LabelerConfig(**collect(args, LabelerConfig))
    set_threads(args.threads)
    images, labels, scale, input_dtype = load_data(args.data)
    train = parse_range(args.train, len(images), "--train")
    val = parse_range(args.val, len(images), "--val")
    if not train:
        raise UserInputError("--train must name at least one image")
    if config.crop > min(images.shape[1:3]):
        raise UserInputError(f"--crop must be at most the image size {tuple(images.shape[1:3])}, got {config.crop}")
    check_memory(f"train-labeler on {len(images)} images {tuple(images.shape[1:])}", training_bytes(
        config, images.shape, int(labels.max()) + 1, len(train) + len(val), bool(val)),
        hint="use fewer or smaller images, a smaller --crop or --batch")
    trainer = LabelerTrainer(config)
    with open_run(args, "train-labeler", asdict(config), seed=config.seed) as run_dir:
        out = run_dir.path
        model, res = trainer.fit(images, labels, train, val, checkpoint=out / "checkpoint.pt",
                                 resume=run_dir.resumed, overwrite=not run_dir.resumed)
        if world()[1] != 0:
            return 0
        meta = {"input_scale": scale, "input_dtype": input_dtype,
                "value_range": [float(images.min()), float(images.max())],
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


#: the libraries ``train-labeler`` and ``label --model`` load (matplotlib, tifffile) and the model, in bytes
BASE_BYTES = 110e6


def inference_bytes_per_pixel(config, channels: int, num_labels: int) -> float:
    """Bytes per pixel of a :class:`~flowlearn.learning.labeler.LabelerModel` labelling a full image (float32):
    three copies of the filter-bank features, the learned features, the patch predictors' hidden layer and,
    per label, the Krylov basis of the flow (``m`` vectors) and the layers' states."""
    bank = channels * (1 + 4 * config.scales) if config.filter_bank else channels + config.features
    return 4.0 * (3 * bank + 4 * config.features + 2 * config.hidden + (3 * config.m + 20) * num_labels)


def training_bytes(config, shape, num_labels: int, used: int, validation: bool) -> float:
    """What ``train-labeler`` allocates above the started interpreter (measured in docs/reliability.md): the
    libraries, the data (the file's arrays, float32 images, int64 labels: 21 bytes per pixel and channel), the
    fixed inputs of the training and validation images (the filter bank, float32), and the larger of a
    full-image validation and a training step (``batch`` crops through every layer, with the backward pass)."""
    N, H, W, C = shape
    bank = C * (1 + 4 * config.scales) if config.filter_bank else C
    per_pixel = inference_bytes_per_pixel(config, C, num_labels)
    step = config.batch * config.crop**2 * per_pixel * (config.layers + 1)
    return BASE_BYTES + N * H * W * 21.0 * C + used * H * W * 4.0 * bank + max(
        H * W * per_pixel if validation else 0.0, step)


def _curves(history):
    import matplotlib.pyplot as plt  # the user's backend is left as it is (headless: matplotlib picks Agg)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    val = [h for h in history if h.get("validation_error") is not None]
    for ax, hist, key, style, title, label in (
            (axes[0], history, "loss", "-", "training loss", "training loss (KL)"),
            (axes[1], val, "validation_error", "o-", "validation (full images)", "validation pixel error %")):
        ax.plot([h["iteration"] for h in hist], [h[key] for h in hist], style, label=label)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.legend()
    fig.suptitle("train-labeler: deep linearized assignment flow")
    fig.tight_layout()
    return fig
