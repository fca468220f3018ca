"""``flowlearn label``: label an image by an assignment flow.

Writes to ``--out``: ``labels.npy`` (H x W int64), ``labels.png`` (coloured labels),
``overlay.png`` (labels over the image), ``metrics.json`` (flow, parameters, steps,
status, seconds, label error against ``--truth`` if given) and ``manifest.json``.

A flow that does not converge, overflows or stays undecided exits with code 3 and a message
naming the option to change; ``--allow-unconverged`` writes its result, marked by its status.

``--model DIR/model.pt`` (from ``flowlearn train-labeler``) labels the image with a trained deep
linearized flow instead of prototypes (``metrics.json`` then holds ``pixel_error_percent`` with ``--truth``),
and also writes ``probabilities.tif`` (float32, one page per class), ``entropy.tif`` (float32, nats),
``labels.tif`` (uint8/uint16) and ``entropy.png``.  With ``--model`` the image may be a multi-page TIFF
stack ``(Z, H, W)``: every page is labelled and the outputs are ``(Z, ...)`` stacks.  The image is mapped
to the model's training scale (uint8 / 255, uint16 / 65535, float [0, 1] as is; see
``flowlearn.cli.train_labeler.label_with_model``); an image no rule maps is an error.

``--z-flow`` (with ``--model`` and a stack of at least two pages; ``label_with_model``) runs a 3-D linearized assignment flow over the
per-slice probabilities (:func:`flowlearn.learning.stack_flow.stack_flow`, blockwise along z: ``--z-block``
slices with ``--z-overlap`` slices of context, and in ``--tile`` tiles when given); the probability, entropy and
label outputs then come from that flow.  Off by default: on ISBI 2012 it did not help (docs/learning.md).
"""

from __future__ import annotations

import time

import numpy as np

from .._checks import UserInputError, check_memory, check_seed
from ..data import (
    kmeans_prototypes,
    load_prototypes,
    nearest_prototype_labels,
    read_image,
)
from ..evaluation import label_error
from ..evaluation.labels import match_labels
from ..io import save_npy
from ..labeling import FlowKind, label
from ._inputs import load_label_map
from ._run import add_run_arguments, check_run, open_run, set_threads, write_labeling
from .train_labeler import label_with_model as _run_model

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
    z.add_argument("--z-T", type=float, default=_Z_DEFAULTS["T"], metavar="T",
                   help=f"integration time of --z-flow (default {_Z_DEFAULTS['T']})")
    z.add_argument("--z-weight", type=float, default=_Z_DEFAULTS["z_weight"], metavar="W",
                   help="weight of a z neighbour relative to an in-plane one, >= 0 (default "
                        f"{_Z_DEFAULTS['z_weight']} = (4 nm / 50 nm)^2, the ISBI 2012 voxel spacing)")
    z.add_argument("--z-block", type=int, default=_Z_DEFAULTS["block"], metavar="N",
                   help=f"slices per block of --z-flow (default {_Z_DEFAULTS['block']})")
    z.add_argument("--z-overlap", type=int, default=_Z_DEFAULTS["overlap"], metavar="N",
                   help=f"slices of context on each side of a block, at most --z-block (default "
                        f"{_Z_DEFAULTS['overlap']})")
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
    # --- validate everything before writing anything
    set_threads(args.threads)
    check_seed("--seed", args.seed)
    if args.z_flow and args.model is None:
        raise UserInputError("--z-flow needs --model (it runs over a model's per-slice probabilities)")
    if args.model is not None:
        return _run_model(args)
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
    with open_run(args, "label") as run_dir:
        _write(args, run_dir, image, prototypes, truth, result, seconds)
    return 0


def estimate_bytes(H: int, W: int, C: int, J: int, neighbourhood: int, flow: str) -> float:
    """What ``flowlearn label`` allocates above the started interpreter (its peak resident memory less the
    memory after ``import flowlearn.cli.main``; measured in docs/reliability.md): 90 MB of libraries it loads
    (scikit-learn, Pillow) plus, per pixel, the stencil structure (the CSR matrices of Omega and its transpose,
    neighbour indices, mask and weights: 57 bytes per neighbour), the image (16 bytes per channel) and the
    flow's states (about 10 float64 arrays of J labels for the full flow; the linearized flow's Krylov basis
    and system besides)."""
    per_pixel = 57.0 * neighbourhood**2 + 16.0 * C + (80.0 * J if flow == FlowKind.FULL.value else 140.0 * J + 420.0)
    return 90e6 + H * W * per_pixel


def _write(args, run_dir, image, prototypes, truth, result, seconds) -> None:
    out = run_dir.path
    H, W, _ = image.shape
    run_dir.set_status(result.status)
    labels = result.label_image(H, W).cpu().numpy().astype(np.int64)

    metrics = {
        "image": str(args.image),
        "flow": args.flow,
        "neighbourhood": args.neighbourhood,
        "rho": args.rho,
        "num_labels": int(prototypes.shape[0]),
        "steps": result.steps,
        "time": result.time,
        "status": result.status.value,
        "converged": result.status.ok,
        "status_message": result.status.message,
        "mean_entropy": result.mean_entropy,
        "seconds": seconds,
        "stats": result.stats,
    }
    if args.flow == FlowKind.LINEARIZED.value:
        metrics["T"] = args.T
    if truth is not None:
        rounding = nearest_prototype_labels(image, prototypes)
        if args.k is not None:   # k-means ids are arbitrary: match them to the truth before scoring
            rounding = match_labels(rounding, truth)[0]
            labels_scored, mapping = match_labels(labels, truth)
            metrics["cluster_to_truth"] = {str(k): v for k, v in mapping.items()}
        else:
            labels_scored = labels
        metrics["label_error_percent"] = label_error(labels_scored, truth)
        metrics["rounding_label_error_percent"] = label_error(rounding, truth)
    save_npy(out / "prototypes.npy", prototypes)
    write_labeling(out, image, labels, metrics)
    summary = f"{args.flow} flow: {result.steps} steps, status {result.status}, {seconds:.2f} s"
    if truth is not None:
        summary += f", label error {metrics['label_error_percent']:.2f} %"
        if args.k is not None:
            summary += " (k-means clusters matched to the truth's labels by the Hungarian method)"
    print(summary)
    print(f"wrote {out}/labels.npy, labels.png, overlay.png, metrics.json")

