"""``flowlearn voronoi``: write a random Voronoi labeling problem (paper 000, Sect. 4.1) to a directory.

Outputs in ``--out``: ``image.npy`` (noisy float image, noise not clipped), ``image.png``
(clipped for display), ``clean.png``, ``labels.npy`` (ground truth, int64), ``labels.png``
(coloured), ``prototypes.npy`` and ``meta.json`` (arguments, statistics and the label error
of pixel-wise nearest-prototype rounding, in percent).
"""

from __future__ import annotations

import argparse
import re

import numpy as np

from .._checks import check_memory
from ..data import colorize_labels, make_voronoi, nearest_prototype_labels
from ..data.images import to_display
from ..data.voronoi import SCENARIOS
from ..evaluation import label_error
from ..io import save_json, save_npy, save_png
from ._run import add_run_arguments, check_run, open_run


def _size(text: str):
    """``"128"`` -> 128, ``"96x128"`` -> (96, 128) (height x width)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive integers, got {text!r}")
    height, width = match.groups()
    return int(height) if width is None else (int(height), int(width))


def register(subparsers) -> None:
    parser = subparsers.add_parser("voronoi", help="generate a random Voronoi labeling image with ground truth",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=SCENARIOS, default="colors",
                        help="'boundary': thin black cell boundaries on white (J=2, grey); "
                             "'colors': cells coloured by 8 labels (J=8, RGB) (default: colors)")
    parser.add_argument("--size", type=_size, default=128, help="image size N (square) or HxW, >= 8 (default 128)")
    parser.add_argument("--noise", type=float, default=None,
                        help="Gaussian noise std (default: 0.5 boundary, 0.6 colors)")
    parser.add_argument("--seed", type=int, default=0, help="random seed >= 0 (default 0)")
    parser.add_argument("--cells", type=int, default=None, help="number of Voronoi cells >= 2 (default H*W/512)")
    add_run_arguments(parser, resumable=False)
    parser.set_defaults(func=run)


def estimate_bytes(height: int, width: int) -> float:
    """What ``flowlearn voronoi`` allocates above the started interpreter (measured in docs/reliability.md):
    70 MB of libraries (Pillow, SciPy) and 150 bytes per pixel (sites and cells, the clean and the noisy image
    and the noise, three float64 channels each, the labels, and the pictures written: 120 to 170 bytes per
    pixel measured, as NumPy happens to reuse its temporaries or not)."""
    return 70e6 + 150.0 * height * width


def run(args) -> int:
    # Everything is validated (make_voronoi raises UserInputError) before any file is written.
    height, width = (args.size, args.size) if isinstance(args.size, int) else args.size
    if min(height, width) >= 8:    # smaller sizes: make_voronoi names the bad value
        # the arrays make_voronoi makes (its own check, 120 bytes per pixel), then the whole command's estimate
        check_memory(f"a {height}x{width} Voronoi image", 120.0 * height * width, hint="use a smaller --size")
        check_memory(f"voronoi --size {height}x{width} with its libraries and outputs", estimate_bytes(height, width),
                     hint="use a smaller --size")
    check_run(args, "voronoi")
    problem = make_voronoi(args.size, scenario=args.scenario, noise=args.noise, seed=args.seed,
                           num_cells=args.cells)
    rounded = nearest_prototype_labels(problem.image, problem.prototypes)
    error = label_error(rounded, problem.labels)
    residual = problem.image - problem.clean
    height, width = problem.labels.shape
    files = ["image.npy", "image.png", "clean.png", "labels.npy", "labels.png", "prototypes.npy", "meta.json"]
    meta = {"command": "voronoi", "scenario": problem.scenario, "size": [height, width], "noise": problem.noise,
            "seed": problem.seed, "num_cells": problem.num_cells, "num_labels": problem.num_labels,
            "channels": int(problem.image.shape[2]), "rounding_label_error_percent": error,
            "measured_noise_std": float(residual.std()) if residual.size > 1 else 0.0, "stats": problem.stats,
            "files": files}
    with open_run(args, "voronoi", seed=args.seed) as run_dir:
        out = run_dir.path
        save_npy(out / "image.npy", problem.image)
        save_png(out / "image.png", to_display(problem.image))
        save_png(out / "clean.png", to_display(problem.clean))
        save_npy(out / "labels.npy", problem.labels)
        save_png(out / "labels.png", colorize_labels(problem.labels))
        save_npy(out / "prototypes.npy", np.asarray(problem.prototypes))
        save_json(out / "meta.json", meta)
    print(f"voronoi {problem.scenario} {height}x{width}, {problem.num_cells} cells, noise {problem.noise:g}, "
          f"seed {problem.seed}: pixel-wise rounding error {error:.2f} % -> {out}")
    return 0
