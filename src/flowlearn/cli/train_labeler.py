"""``flowlearn train-labeler``: train a deep linearized assignment flow on a labelled image set.

``--data FILE.npz`` holds ``images`` ``(N, H, W[, C])`` (uint8 or float) and ``labels`` ``(N, H, W)`` (int, the
classes 0..J-1 without gaps; a binary mask coded 0/255 is read as 0/1);
``--train 0-15 --val 16-19`` pick the training and validation (model selection) images.  Training uses
random crops with flips, validation the full images.  Writes to ``--out``: ``model.pt`` (weights only,
``torch.load(weights_only=True)``), ``model.json`` (config, channels, labels, input scale, dtype and value
range, parameters),
``history.json``, ``curves.png``, ``checkpoint.pt`` and ``manifest.json``; ``--resume`` continues.
Label new images with ``flowlearn label IMAGE --model DIR/model.pt``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

import numpy as np
import torch

from .._checks import UserInputError, check_int, check_memory, check_positive
from ..engine.distributed import world
from ..io import check_npz, existing_file, save_figure, save_json
from ..learning.labeler import (
    DATA_TERMS,
    LabelerConfig,
    LabelerTrainer,
    prepare_images,
    save_model,
)
from ._flags import add_arguments, collect
from ._run import add_run_arguments, check_run, open_run, set_threads, write_labeling


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
    from ..learning.labeler import MODEL_BOUNDS

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
_BASE_BYTES = 110e6


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
    return _BASE_BYTES + N * H * W * 21.0 * C + used * H * W * 4.0 * bank + max(
        H * W * per_pixel if validation else 0.0, step)


def _curves(history):
    import matplotlib.pyplot as plt  # the user's backend is left as it is (headless: matplotlib picks Agg)

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


def label_with_model(args) -> int:
    """``flowlearn label IMAGE --model DIR/model.pt``: the trained flow on the full image, or on every page of
    a ``(Z, H, W)`` TIFF stack (or ``(Z, H, W, C)`` .npy) slice by slice.

    The image is read in its own dtype (:func:`~flowlearn.data.images.read_stack`) and mapped to the scale
    the model was trained at by the rule of :mod:`flowlearn.learning.labeler_io`: for a model trained on
    uint8 images (scaled by 1/255), uint8 images are divided by 255, uint16 images by 65535, float images
    (and PNG/JPEG, read as [0, 1]) are taken as already scaled (divided by 255 only when they hold 0..255
    values); a model trained on float images takes float images as they are.  An image whose values fit no
    mapping (outside the training range widened by a quarter of its width) is a one-line error.

    Writes ``labels.npy`` (int64, ``(H, W)`` or ``(Z, H, W)``), ``labels.png``, ``overlay.png`` (the middle
    slice of a stack), ``metrics.json``, and ``probabilities.tif``, ``entropy.tif``, ``labels.tif``,
    ``entropy.png`` (see :func:`~flowlearn.cli._run.write_probabilities`)."""
    import time

    from ..data.images import read_stack
    from ..evaluation import label_error
    from ..geometry import entropy
    from ..learning.labeler import load_model, model_path
    from ..learning.labeler_io import label_stack, normalise_image
    from ._inputs import load_label_map
    from ._run import write_probabilities

    model, meta = load_model(existing_file(model_path(args.model), "--model",
                                           "a model.pt written by train-labeler or a shipped model's name"),
                             what="--model file")
    tile = getattr(args, "tile", 0) or 0
    raw = read_stack(args.image)
    Z, H, W, C = raw.shape
    if C != model.channels:
        raise UserInputError(f"image {str(args.image)!r} has {C} channel(s), the model was trained on {model.channels}")
    x, how, note = normalise_image(raw, meta, name=f"image {str(args.image)!r}")
    J = model.num_labels   # the flow on one slice at a time; every slice's outputs kept (float32 probabilities)
    zkw = _z_flow_settings(args, (Z, H, W), J, tile)
    truth = None
    if args.truth is not None:
        truth = _load_truth(args.truth, (Z, H, W)) if Z > 1 else load_label_map(args.truth, (H, W), option="--truth")
    check_run(args, "label")
    side = (min(H, tile + 2 * args.overlap), min(W, tile + 2 * args.overlap)) if tile else (H, W)
    # the 3-D flow: its blocks (--z-block + 2 --z-overlap slices of a tile, ~200 + 100 J bytes per voxel) and a
    # second probability stack
    z_block = 0 if zkw is None else min(Z, zkw["block"] + 2 * zkw["overlap"]) * (200.0 + 100.0 * J)
    check_memory(f"label --model of {Z} x {H}x{W} image(s) with {J} labels", _BASE_BYTES + side[0] * side[1] * (
        inference_bytes_per_pixel(model.config, C, J) + z_block) + Z * H * W * (
        raw.itemsize * C + 4.0 * C + (8.0 if zkw is None else 16.0) * J + 24.0),
        hint="crop the image or pass --tile 512" + ("" if zkw is None else " or a smaller --z-block"))
    if note:
        print(note)
    t0 = time.perf_counter()
    if tile:
        from ..learning.tiling import probabilities_tiled

        probs = np.stack([probabilities_tiled(model, s, tile=tile, overlap=args.overlap) for s in x])
        labels = probs.argmax(-1).astype(np.int64)
    else:
        labels, probs = label_stack(model, x)
    z_seconds = None
    if zkw is not None:   # the 3-D flow over the per-slice probabilities
        from ..learning.stack_flow import stack_flow

        t1 = time.perf_counter()
        probs = stack_flow(probs, **zkw)
        labels, z_seconds = probs.argmax(-1).astype(np.int64), time.perf_counter() - t1
    seconds = time.perf_counter() - t0
    ent = entropy(torch.from_numpy(probs)).clamp_min(0).numpy()   # nats, 0 log 0 = 0
    if Z == 1:
        labels, probs, ent = labels[0], probs[0], ent[0]
    with open_run(args, "label") as run_dir:
        out = run_dir.path
        metrics = {"image": str(args.image), "model": str(args.model), "layers": model.config.layers,
                   "num_labels": model.num_labels, "parameters": model.num_parameters(), "seconds": seconds,
                   "shape": list(labels.shape), "input_dtype": str(raw.dtype), "input_scaling": how,
                   "mean_entropy": float(ent.mean())}
        if zkw is not None:
            metrics["z_flow"] = {**zkw, "seconds": z_seconds, "neighbourhood": 6, "rho": 1.0}
        if truth is not None:
            metrics["pixel_error_percent"] = label_error(labels.reshape(-1, W), np.asarray(truth).reshape(-1, W))
            metrics["label_error_percent"] = metrics["pixel_error_percent"]
        if Z > 1:
            metrics["png_slice"] = Z // 2
        write_labeling(out, x[Z // 2], labels[Z // 2] if Z > 1 else labels, metrics)
        if Z > 1:   # labels.npy holds the whole stack
            from ..io import save_npy

            save_npy(out / "labels.npy", labels)
        names = write_probabilities(out, labels, probs, ent, title=f"{args.image}")
        msg = f"deep linearized flow ({model.config.layers} layers): {seconds:.2f} s"
        if Z > 1:
            msg += f", {Z} slices" + ("" if zkw is None else f", then the 3-D flow ({z_seconds:.2f} s)")
        if truth is not None:
            msg += f", pixel error {metrics['pixel_error_percent']:.2f} %"
        print(msg)
        print(f"wrote {out}/labels.npy, labels.png, overlay.png, metrics.json, {', '.join(names)}")
    return 0


def _z_flow_settings(args, shape, num_labels: int, tile):
    """The keyword arguments of :func:`~flowlearn.learning.stack_flow.stack_flow` that ``--z-flow`` and its flags
    ask for (checked, before anything is written), or ``None`` without ``--z-flow``."""
    if not getattr(args, "z_flow", False):
        return None
    from ..learning.stack_flow import stack_flow_lazy

    Z, H, W = shape
    if Z < 2:
        raise UserInputError(f"--z-flow needs a stack of at least 2 pages (Z, H, W), got a single image "
                             f"{str(args.image)!r} ({H}x{W})")
    check_positive("--z-T", args.z_T)
    check_positive("--z-weight", args.z_weight, strict=False)
    check_int("--z-overlap", args.z_overlap, minimum=0, maximum=check_int("--z-block", args.z_block, minimum=1))
    zkw = {"T": args.z_T, "z_weight": args.z_weight, "block": args.z_block, "overlap": args.z_overlap,
           "tile": tile or None, "tile_overlap": args.overlap, "start": "input"}
    from ..learning.tiling import _dask

    # the library's own checks, on a lazy stand-in of the probability stack (nothing of its size allocated)
    stack_flow_lazy(_dask().zeros((Z, H, W, num_labels), chunks=(1, H, W, num_labels), dtype=np.float32), **zkw)
    return zkw


def _load_truth(path, shape):
    """A ``(Z, H, W)`` ground truth of a stack: an integer ``.npy`` array or TIFF stack, values >= 0."""
    from ..data.images import read_stack

    lab = read_stack(path) if not str(path).lower().endswith(".npy") else None
    if lab is None:
        from ._inputs import load_label_map

        lab = load_label_map(path, shape, option="--truth")[..., None]
    if lab.shape != (*shape, 1) or not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0:
        raise UserInputError(f"--truth {str(path)!r} must be integer labels >= 0 of the stack's shape {shape}, got "
                             f"dtype {lab.dtype} and shape {lab.shape[:3]}")
    return lab[..., 0].astype(np.int64)
