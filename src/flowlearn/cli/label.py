"""``flowlearn label``: label an image by an assignment flow.

Writes to ``--out``: ``labels.npy`` (int64), ``labels.png``, ``overlay.png``, ``metrics.json`` (settings, steps,
status, seconds, the label error against ``--truth``) and ``manifest.json``; a flow that fails exits with code 3
unless ``--allow-unconverged``.  With ``--model``, a deep linearized flow (:func:`label_with_model`), also
``probabilities.tif``, ``entropy.tif``, ``labels.tif`` and ``entropy.png``, for an image or a multi-page TIFF
stack ``(Z, H, W)``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .._checks import UserInputError, check_int, check_memory, check_positive, check_seed
from ..data import kmeans_prototypes, load_prototypes, nearest_prototype_labels, read_image
from ..data.images import read_stack
from ..evaluation import label_error
from ..evaluation.labels import match_labels
from ..io import existing_file, save_npy
from ..geometry import entropy
from ..labeling import label
from ..labeling.api import FlowKind
from ..learning.labeler import load_model, model_path
from ..learning.labeler_io import label_stack, normalise_image
from ..learning.stack_flow import stack_flow, stack_flow_lazy
from ..learning.tiling import _dask, probabilities_tiled
from ._run import (add_run_arguments, check_run, load_label_map, open_run, set_threads, write_labeling,
                   write_probabilities)
from .train_labeler import BASE_BYTES, inference_bytes_per_pixel

#: defaults of ``--z-flow`` (chosen on ISBI 2012 validation slices 16-19 by benchmarks/stack_flow.py)
_Z_DEFAULTS = {"T": 0.5, "z_weight": 0.0064, "block": 8, "overlap": 4}


def register(subparsers) -> None:
    p = subparsers.add_parser("label", help="label an image by an assignment flow",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("image", help="PNG/JPEG/TIFF file or .npy array (H x W or H x W x C); with --model also a "
                                  "multi-page TIFF stack (Z x H x W)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prototypes", metavar="FILE",
                     help=".npy or text file, one row per label (J x C, in the image's value range)")
    src.add_argument("--k", type=int, metavar="N", help="use N prototypes from k-means on the image")
    src.add_argument("--model", metavar="MODEL.pt",
                     help="a deep linearized flow trained by 'flowlearn train-labeler' (its model.pt), or a model "
                          "shipped with flowlearn: isbi-membranes (EM cell membranes)")
    p.add_argument("--tile", type=int, default=0, metavar="N",
                   help="with --model: label N x N tiles with --overlap pixels of context each (needs dask; "
                        "memory of a few tiles whatever the image size; default 0: whole slices)")
    p.add_argument("--overlap", type=int, default=48, metavar="N", help="context margin of --tile (default 48)")
    z = p.add_argument_group("3-D flow over a stack (with --model)")
    z.add_argument("--z-flow", action="store_true",
                   help="run a 3-D linearized flow over the per-slice probabilities of a (Z, H, W) stack, starting "
                        "at them (data term -log p, 6-neighbourhood); the outputs come from it. Off by default: "
                        "no gain from the z coupling on ISBI 2012 (docs/learning.md)")
    for name, typ, meta, text in (
            ("T", float, "T", "integration time of --z-flow"),
            ("weight", float, "W", "weight of a z neighbour relative to an in-plane one, >= 0"),
            ("block", int, "N", "slices per block of --z-flow"),
            ("overlap", int, "N", "slices of context on each side of a block, at most --z-block")):
        default = _Z_DEFAULTS["z_weight" if name == "weight" else name]
        extra = " = (4 nm / 50 nm)^2, the ISBI 2012 voxel spacing" if name == "weight" else ""
        z.add_argument(f"--z-{name}", type=typ, default=default, metavar=meta,
                       help=f"{text} (default {default}{extra})")
    p.add_argument("--flow", default="full", choices=[k.value for k in FlowKind])
    p.add_argument("--neighbourhood", type=int, default=3, help="odd neighbourhood size (default 3)")
    p.add_argument("--rho", type=float, default=1.0, help="data-term scale rho > 0 (default 1)")
    p.add_argument("--T", type=float, default=10.0, help="integration time of the linearized flow")
    p.add_argument("--step-size", type=float, default=1.0, help="step of the full flow")
    p.add_argument("--truth", metavar="LABELS.npy",
                   help="ground-truth label map for the label error (with --k, clusters are first matched to it)")
    p.add_argument("--seed", type=int, default=0, help="seed of k-means")
    p.add_argument("--allow-unconverged", action="store_true",
                   help="write the result of a flow that failed (status in metrics.json) instead of exiting 3")
    add_run_arguments(p, resumable=False)
    p.set_defaults(func=run)


def run(args) -> int:
    set_threads(args.threads)   # everything is checked before anything is written
    check_seed("--seed", args.seed)
    if args.z_flow and args.model is None:
        raise UserInputError("--z-flow needs --model (it runs over a model's per-slice probabilities)")
    if args.model is not None:
        return label_with_model(args)
    image = read_image(args.image)   # a multi-page TIFF stack is refused here: stacks need --model
    H, W, C = image.shape
    prototypes = None if args.prototypes is None else load_prototypes(args.prototypes, channels=C)
    truth = None if args.truth is None else load_label_map(args.truth, (H, W), option="--truth")
    check_run(args, "label")         # an earlier run in --out is refused before anything is computed
    J = args.k if prototypes is None else prototypes.shape[0]
    if 1 <= args.neighbourhood <= 2 * max(H, W) - 1 and J >= 1:   # else the library names the bad value
        check_memory(f"label of a {H}x{W} image with {C} channel(s), {J} labels and {args.neighbourhood}x"
                     f"{args.neighbourhood} neighbourhoods ({args.flow} flow)",
                     estimate_bytes(H, W, C, J, args.neighbourhood, args.flow),
                     hint="use a smaller image or neighbourhood, or fewer labels")
    if prototypes is None:
        prototypes = kmeans_prototypes(image, args.k, seed=args.seed)
    t0 = time.perf_counter()
    result = label(image, prototypes, flow=args.flow, neighbourhood=args.neighbourhood, rho=args.rho,
                   T=args.T, step_size=args.step_size, throw=not args.allow_unconverged)
    seconds = time.perf_counter() - t0
    labels = result.label_image(H, W).cpu().numpy().astype(np.int64)
    metrics = {"image": str(args.image), "flow": args.flow, "neighbourhood": args.neighbourhood, "rho": args.rho,
               "num_labels": int(prototypes.shape[0]), "steps": result.steps, "time": result.time,
               "status": result.status.value, "converged": result.status.ok,
               "status_message": result.status.message, "mean_entropy": result.mean_entropy, "seconds": seconds,
               "stats": result.stats}
    if args.flow == FlowKind.LINEARIZED.value:
        metrics["T"] = args.T
    summary = f"{args.flow} flow: {result.steps} steps, status {result.status}, {seconds:.2f} s"
    if truth is not None:
        rounding, scored = nearest_prototype_labels(image, prototypes), labels
        if args.k is not None:   # k-means ids are arbitrary: match them to the truth before scoring
            rounding = match_labels(rounding, truth)[0]
            scored, mapping = match_labels(labels, truth)
            metrics["cluster_to_truth"] = {str(k): v for k, v in mapping.items()}
        metrics["label_error_percent"] = label_error(scored, truth)
        metrics["rounding_label_error_percent"] = label_error(rounding, truth)
        summary += f", label error {metrics['label_error_percent']:.2f} %" + (
            "" if args.k is None else " (k-means clusters matched to the truth's labels by the Hungarian method)")
    with open_run(args, "label") as run_dir:
        run_dir.set_status(result.status)
        save_npy(run_dir.path / "prototypes.npy", prototypes)
        write_labeling(run_dir.path, image, labels, metrics)
    print(summary)
    print(f"wrote {run_dir.path}/labels.npy, labels.png, overlay.png, metrics.json")
    return 0


def estimate_bytes(H: int, W: int, C: int, J: int, neighbourhood: int, flow: str) -> float:
    """Peak memory of ``flowlearn label`` above the started interpreter (docs/reliability.md): 90 MB of libraries,
    and per pixel the stencil (57 bytes per neighbour), the image (16 per channel) and the flow's states."""
    per_pixel = 57.0 * neighbourhood**2 + 16.0 * C + (80.0 * J if flow == FlowKind.FULL.value else 140.0 * J + 420.0)
    return 90e6 + H * W * per_pixel


def label_with_model(args) -> int:
    """``flowlearn label IMAGE --model MODEL``: the trained flow on the image (mapped to the model's training scale
    by :func:`~flowlearn.learning.labeler_io.normalise_image`), or slice by slice on a ``(Z, H, W)`` TIFF stack
    (or ``(Z, H, W, C)`` .npy), then the 3-D flow of ``--z-flow``; pictures show the middle slice of a stack."""
    model, meta = load_model(existing_file(model_path(args.model), "--model",
                                           "a model.pt written by train-labeler or a shipped model's name"),
                             what="--model file")
    tile, raw = args.tile or 0, read_stack(args.image)
    Z, H, W, C = raw.shape
    if C != model.channels:
        raise UserInputError(f"image {str(args.image)!r} has {C} channel(s), the model was trained on "
                             f"{model.channels}")
    x, how, note = normalise_image(raw, meta, name=f"image {str(args.image)!r}")
    J = model.num_labels   # the flow on one slice at a time; every slice's outputs kept (float32 probabilities)
    zkw = _z_flow_settings(args, (Z, H, W), J, tile)
    truth = None if args.truth is None else _load_truth(args.truth, (Z, H, W) if Z > 1 else (H, W))
    check_run(args, "label")
    side = (min(H, tile + 2 * args.overlap), min(W, tile + 2 * args.overlap)) if tile else (H, W)
    # the 3-D flow: blocks of --z-block + 2 --z-overlap slices of a tile (~200 + 100 J bytes per voxel), 2nd stack
    z_block = 0 if zkw is None else min(Z, zkw["block"] + 2 * zkw["overlap"]) * (200.0 + 100.0 * J)
    check_memory(f"label --model of {Z} x {H}x{W} image(s) with {J} labels", BASE_BYTES + side[0] * side[1] * (
        inference_bytes_per_pixel(model.config, C, J) + z_block) + Z * H * W * (
        raw.itemsize * C + 4.0 * C + (8.0 if zkw is None else 16.0) * J + 24.0),
        hint="crop the image or pass --tile 512" + ("" if zkw is None else " or a smaller --z-block"))
    if note:
        print(note)
    t0 = time.perf_counter()
    if tile:
        probs = np.stack([probabilities_tiled(model, s, tile=tile, overlap=args.overlap) for s in x])
        labels = probs.argmax(-1).astype(np.int64)
    else:
        labels, probs = label_stack(model, x)
    msg = f", {Z} slices" if Z > 1 else ""
    if zkw is not None:   # the 3-D flow over the per-slice probabilities
        t1 = time.perf_counter()
        probs = stack_flow(probs, **zkw)
        labels, z_seconds = probs.argmax(-1).astype(np.int64), time.perf_counter() - t1
        msg += f", then the 3-D flow ({z_seconds:.2f} s)"
    seconds = time.perf_counter() - t0
    ent = entropy(torch.from_numpy(probs)).clamp_min(0).numpy()   # nats, 0 log 0 = 0
    if Z == 1:
        labels, probs, ent = labels[0], probs[0], ent[0]
    metrics = {"image": str(args.image), "model": str(args.model), "layers": model.config.layers,
               "num_labels": model.num_labels, "parameters": model.num_parameters(), "seconds": seconds,
               "shape": list(labels.shape), "input_dtype": str(raw.dtype), "input_scaling": how,
               "mean_entropy": float(ent.mean())}
    if zkw is not None:
        metrics["z_flow"] = {**zkw, "seconds": z_seconds, "neighbourhood": 6, "rho": 1.0}
    if truth is not None:
        metrics["pixel_error_percent"] = label_error(labels.reshape(-1, W), np.asarray(truth).reshape(-1, W))
        metrics["label_error_percent"] = metrics["pixel_error_percent"]
        msg += f", pixel error {metrics['pixel_error_percent']:.2f} %"
    if Z > 1:
        metrics["png_slice"] = Z // 2
    with open_run(args, "label") as run_dir:
        out = run_dir.path
        write_labeling(out, x[Z // 2], labels[Z // 2] if Z > 1 else labels, metrics)
        if Z > 1:   # labels.npy holds the whole stack
            save_npy(out / "labels.npy", labels)
        names = write_probabilities(out, labels, probs, ent, title=f"{args.image}")
    print(f"deep linearized flow ({model.config.layers} layers): {seconds:.2f} s" + msg)
    print(f"wrote {out}/labels.npy, labels.png, overlay.png, metrics.json, {', '.join(names)}")
    return 0


def _z_flow_settings(args, shape, num_labels: int, tile):
    """The checked keyword arguments of :func:`~flowlearn.learning.stack_flow.stack_flow` that ``--z-flow`` and its
    flags ask for, or ``None`` without ``--z-flow``."""
    if not args.z_flow:
        return None
    Z, H, W = shape
    if Z < 2:
        raise UserInputError(f"--z-flow needs a stack of at least 2 pages (Z, H, W), got a single image "
                             f"{str(args.image)!r} ({H}x{W})")
    check_positive("--z-T", args.z_T)
    check_positive("--z-weight", args.z_weight, strict=False)
    check_int("--z-overlap", args.z_overlap, minimum=0, maximum=check_int("--z-block", args.z_block, minimum=1))
    zkw = {"T": args.z_T, "z_weight": args.z_weight, "block": args.z_block, "overlap": args.z_overlap,
           "tile": tile or None, "tile_overlap": args.overlap, "start": "input"}
    # the library's own checks, on a lazy stand-in of the probability stack (nothing of its size allocated)
    stack_flow_lazy(_dask().zeros((Z, H, W, num_labels), chunks=(1, H, W, num_labels), dtype=np.float32), **zkw)
    return zkw


def _load_truth(path, shape):
    """``--truth`` of an image (H, W) or a stack (Z, H, W): an integer ``.npy`` array (for a stack also a TIFF
    stack), values >= 0."""
    if len(shape) == 2 or str(path).lower().endswith(".npy"):
        return load_label_map(path, shape, option="--truth")
    lab = read_stack(path)
    if lab.shape != (*shape, 1) or not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0:
        raise UserInputError(f"--truth {str(path)!r} must be integer labels >= 0 of the stack's shape {shape}, got "
                             f"dtype {lab.dtype} and shape {lab.shape[:3]}")
    return lab[..., 0].astype(np.int64)
