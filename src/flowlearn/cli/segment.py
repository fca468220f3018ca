"""``flowlearn segment``: segmentation of a photograph with uncertainty by a randomized assignment flow.

A Potts model from the image (unaries from K colour prototypes found by k-means), a randomized flow trained to
its Gibbs distribution, compared with a long Gibbs run (:mod:`flowlearn.experiments.photo_segmentation`).

Writes to ``--out``: ``metrics.json`` (distinct segmentations and mean pairwise Hamming distance of flow
samples beside Gibbs', marginal differences, timings), ``samples.png``, ``marginals.png``, ``entropy.png``,
``image.png``, ``prototypes.npy``, ``marginals_flow.npy``, ``marginals_gibbs.npy``, ``history.json``,
``training_curve.png`` and ``checkpoint.pt`` (``--resume`` continues it).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict

import numpy as np

from .._checks import UserInputError, check_memory
from ..data import kmeans_prototypes, read_image
from ..engine.distributed import world
from ..experiments.photo_segmentation import (PhotoSegmentationConfig, downsample, photo_potts_model,
                                              run_photo_segmentation, segment_memory)
from ..io import save_json, save_npy, save_png
from ..plotting import image_panel
from ..randomized.plots import save_samples_png, save_training_curve
from ._flags import add_arguments, collect
from ._run import add_run_arguments, open_run, set_threads

_RENAME = {"iterations": "--iters"}
_CHOICES = {"interaction": ("conv", "sparse"), "lr_schedule": ("constant", "cosine")}
BUILTIN = "chelsea"


def register(subparsers) -> None:
    p = subparsers.add_parser("segment", help="segment a photograph with uncertainty (randomized flow vs Gibbs)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help=f"PNG/JPEG/.npy image, or '{BUILTIN}' (scikit-image's cat, if installed)")
    add_arguments(p, PhotoSegmentationConfig, rename=_RENAME, choices=_CHOICES)
    add_run_arguments(p)
    p.set_defaults(func=run)


def load_image(name) -> np.ndarray:
    """The image file ``name`` (H, W, C) in its value range, or scikit-image's ``chelsea`` in [0, 1]."""
    if str(name) != BUILTIN:
        return read_image(name)
    try:
        from skimage import data
    except ImportError as exc:
        raise UserInputError(f"image {BUILTIN!r} needs scikit-image (pip install scikit-image, or the "
                             f"'data' extra); or pass an image file") from exc
    return data.chelsea().astype(np.float64) / 255.0


def run(args) -> int:
    config = PhotoSegmentationConfig(**collect(args, PhotoSegmentationConfig))
    set_threads(args.threads)
    image = downsample(load_image(args.image), config.size, square_crop=config.square_crop)
    H, W = image.shape[:2]
    if H * W < config.labels:
        raise UserInputError(f"image has {H * W} pixels, fewer than --labels {config.labels}")
    check_memory(f"segment of a {H}x{W} image with {config.labels} labels",
                 segment_memory((H, W), config.labels, config)["total"],
                 hint="use a smaller --size, --batch-size, --gibbs-chains or --num-samples")
    prototypes = kmeans_prototypes(image, config.labels, seed=config.seed)
    model = photo_potts_model(image, prototypes, data_weight=config.data_weight, coupling=config.coupling)
    with open_run(args, "segment", asdict(config), seed=config.seed) as run_dir:
        out = run_dir.path
        result = run_photo_segmentation(model, config, checkpoint_path=out / "checkpoint.pt", resume=args.resume,
                                        overwrite=args.overwrite)
        if world()[1] != 0:
            return 0
        K = model.num_labels
        rgb = _display(image)
        save_png(out / "image.png", (np.clip(rgb, 0, 1) * 255).astype(np.uint8))
        save_npy(out / "prototypes.npy", prototypes)
        save_npy(out / "marginals_flow.npy", result.flow_marginals.numpy())
        save_npy(out / "marginals_gibbs.npy", result.gibbs_marginals.numpy())
        save_samples_png(out / "samples.png", {"randomized AF samples": result.flow_samples[:6],
                                               "Gibbs samples (independent chains)": result.gibbs_samples[:6]},
                         (H, W), scale=max(1, 256 // max(H, W)), per_row=6, num_labels=K)
        _marginals_png(out / "marginals.png", result, (H, W), K)
        _entropy_png(out / "entropy.png", rgb, result, (H, W), K)
        save_training_curve(out / "training_curve.png", result.training.history)
        save_json(out / "history.json", result.training.history)
        save_json(out / "metrics.json", {
            "image": str(args.image), "config": asdict(config), **result.metrics,
            "figures": {"samples.png": "rows: randomized AF samples, Gibbs samples; colour legend in the title",
                        "marginals.png": "P(label k) per pixel; rows: randomized AF, Gibbs",
                        "entropy.png": "image, per-pixel entropy of the flow's and Gibbs' marginals, "
                                       "|flow - Gibbs| marginal difference"}})
    f, g = result.metrics["flow"], result.metrics["gibbs"]
    print(f"{H}x{W}, {K} labels: flow {f['distinct']}/{f['num_samples']} distinct, Hamming {f['mean_hamming']:.4f}; "
          f"Gibbs {g['distinct']}/{g['num_samples']} distinct, Hamming {g['mean_hamming']:.4f}; "
          f"marginal difference {result.metrics['marginal_difference']:.4f} "
          f"(Gibbs s.e. {g['marginal_standard_error_mean']:.4f})")
    print(f"wrote {out / 'metrics.json'}")
    return 0


def _display(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return img[..., :3] if img.shape[2] >= 3 else np.repeat(img[..., :1], 3, axis=2)


def _grey(values, grid, vmax: float = 1.0) -> np.ndarray:
    v = np.clip(np.asarray(values, dtype=np.float64).reshape(grid) / vmax, 0, 1)
    return np.repeat(v[..., None], 3, axis=2)


def _marginals_png(path, result, grid, K):
    images = [_grey(q[:, k], grid) for q in (result.flow_marginals, result.gibbs_marginals) for k in range(K)]
    titles = [f"{name}: P(label {k})" for name in ("randomized AF", "Gibbs") for k in range(K)]
    return image_panel(path, images, titles, ncols=K, fit=True,
                       suptitle="marginals per pixel (black 0, white 1); row 1: randomized AF, row 2: Gibbs")


def _entropy_png(path, rgb, result, grid, K):
    hmax = math.log(K)
    diff = 0.5 * (result.flow_marginals - result.gibbs_marginals).abs().sum(-1)
    images = [rgb, _grey(result.flow_entropy, grid, hmax), _grey(result.gibbs_entropy, grid, hmax), _grey(diff, grid)]
    titles = ["image (downsampled)", "entropy, randomized AF", "entropy, Gibbs", "1/2 |flow - Gibbs|_1"]
    return image_panel(path, images, titles, fit=True,
                       suptitle=f"per-pixel entropy of the marginals (black 0, white log {K} = {hmax:.2f} nats); "
                                f"marginal difference (black 0, white 1)")
