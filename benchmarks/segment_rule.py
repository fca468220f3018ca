r"""Which ``flowlearn segment`` recipe fits a photo's Potts model best: the measurement behind its defaults.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.segment_rule --out DIR [--images chelsea astronaut] [--threads 1]

For each scikit-image photo (chosen as development images; ``coffee`` is kept for the report) the Potts model of
``flowlearn segment`` (``PhotoSegmentationConfig`` defaults: longer side 128, k-means prototypes, unit
coupling) is built once and one long Gibbs run (the command's reference) gives the marginals.  Every candidate
recipe (interaction, iterations, batch, step) trains a flow from the same seed and is scored as the command
scores it: mean absolute marginal error against Gibbs, the flow's mean Hamming diversity over Gibbs' expected
one, and the relative mean-energy gap, with its training time and peak memory.

Writes ``DIR/segment_rule.json`` and prints one row per image and recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._memory import environment, measure
from flowlearn.data import kmeans_prototypes
from flowlearn.experiments.photo_segmentation import (
    PhotoSegmentationConfig,
    build_flow,
    downsample,
    photo_potts_model,
    sample_diversity,
)
from flowlearn.io import save_json
from flowlearn.pgm.gibbs import grid_potts_gibbs
from flowlearn.randomized import train_randomized_flow

#: candidate recipes: name -> PhotoSegmentationConfig fields changed from the defaults
RECIPES = {
    "conv": {"interaction": "conv"},
    "sparse": {"interaction": "sparse"},
    "conv-600": {"interaction": "conv", "iterations": 600},
    "sparse-600": {"interaction": "sparse", "iterations": 600},
    "conv-b32": {"interaction": "conv", "batch_size": 32},
}


def _image(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)().astype(np.float64) / 255.0


def _score(model, config, gibbs) -> dict:
    flow = build_flow(model, config)
    t0 = time.perf_counter()
    train_randomized_flow(flow, model, config.training_config(), show_progress=False)
    seconds = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(config.seed + 1)
    samples = flow.sample(config.num_samples, gen)
    q = flow.marginals(config.marginal_samples, gen).double()
    energy = float(model.energy(samples).double().mean())
    return {"train_seconds": seconds,
            "mean_abs_marginal_error": float((q - gibbs.marginals).abs().mean()),
            "map_differs": float((q.argmax(-1) != gibbs.marginals.argmax(-1)).double().mean()),
            "hamming_ratio": sample_diversity(samples)["mean_hamming"] / gibbs.expected_hamming(),
            "energy_gap": (energy - gibbs.mean_energy) / abs(gibbs.mean_energy)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--images", nargs="+", default=["chelsea", "astronaut"])
    p.add_argument("--labels", type=int, default=4)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = PhotoSegmentationConfig(labels=args.labels)
    rows = []
    for name in args.images:
        image = downsample(_image(name), base.size)
        model = photo_potts_model(image, kmeans_prototypes(image, base.labels, seed=base.seed))
        gibbs = grid_potts_gibbs(model, base.gibbs_samples, num_chains=base.gibbs_chains, burn_in=base.gibbs_burn_in,
                                 seed=base.seed + 3, keep_samples=False)
        for recipe in args.recipes:
            config = dataclasses.replace(base, **RECIPES[recipe])
            with measure() as m:
                res = _score(model, config, gibbs)
            mem = m["peak_mb"]
            row = {"image": name, "grid": list(model.grid_shape), "recipe": recipe, **RECIPES[recipe], **res,
                   "peak_mb": mem}
            rows.append(row)
            print(f"{name:10s} {recipe:11s} marg {res['mean_abs_marginal_error']:.4f}  map {res['map_differs']:.4f}  "
                  f"hamming x{res['hamming_ratio']:.2f}  energy {res['energy_gap']:+.4f}  "
                  f"{res['train_seconds']:.0f} s  {mem:.0f} MB", flush=True)
            args.out.mkdir(parents=True, exist_ok=True)
            save_json(args.out / "segment_rule.json", {"environment": environment(), "labels": args.labels,
                                                       "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
