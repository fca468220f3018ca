"""``flowlearn demo``: label a noisy Voronoi image three ways, in well under a minute.

Generates a noisy random Voronoi image (8 coloured labels, pixel-wise rounding about 50 %
wrong), labels it by pixel-wise nearest-prototype rounding, by the full assignment flow
(geometric Euler) and by the linearized assignment flow (Krylov exponential integration),
with uniform 3x3 weights, and writes the PNGs and ``metrics.json`` (label error in % of each).
"""

from __future__ import annotations

import time

import numpy as np

from ..data import colorize_labels, label_error, make_voronoi, nearest_prototype_labels, to_display
from ..io import ensure_out_dir, save_json, save_npy, save_png
from ..labeling import label
from ..plotting import image_panel


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the built-in demonstration", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--size", type=int, default=128, help="image size (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def labeling_demo(out, size: int = 128, seed: int = 0) -> dict:
    """The labeling part of the demo; returns its metrics."""
    v = make_voronoi(size, scenario="colors", seed=seed)
    H, W, _ = v.image.shape
    metrics = {"image": {"size": [H, W], "scenario": "colors", "noise": v.noise, "seed": seed,
                         "num_labels": int(v.prototypes.shape[0])}}
    maps = {}
    t0 = time.perf_counter()
    maps["rounding"] = nearest_prototype_labels(v.image, v.prototypes)
    metrics["rounding"] = {"label_error_percent": label_error(maps["rounding"], v.labels),
                           "seconds": time.perf_counter() - t0}
    for name, kw in (("full_flow", dict(flow="full")), ("linearized_flow", dict(flow="linearized", T=20.0))):
        t0 = time.perf_counter()
        res = label(v.image, v.prototypes, rho=1.0, **kw)
        maps[name] = res.label_image(H, W).numpy()
        metrics[name] = {"label_error_percent": label_error(maps[name], v.labels), "steps": res.steps,
                         "status": res.status, "seconds": time.perf_counter() - t0, **kw}
    save_png(out / "image.png", to_display(v.image))
    save_png(out / "truth.png", colorize_labels(v.labels))
    for name, lab in maps.items():
        save_npy(out / f"labels_{name}.npy", lab)
        save_png(out / f"labels_{name}.png", colorize_labels(lab))
    image_panel(out / "labeling.png",
                [to_display(v.image), colorize_labels(v.labels)] + [colorize_labels(m) for m in maps.values()],
                ["noisy image", "ground truth"] + [f"{k.replace('_', ' ')}: {metrics[k]['label_error_percent']:.1f} % wrong"
                                                   for k in maps],
                suptitle="Assignment-flow labeling (uniform 3x3 weights)")
    return metrics


def run(args) -> int:
    out = ensure_out_dir(args.out, name="--out")
    t0 = time.perf_counter()
    metrics = {"labeling": labeling_demo(out, size=args.size, seed=args.seed)}
    metrics["seconds"] = time.perf_counter() - t0
    save_json(out / "metrics.json", metrics)
    lab = metrics["labeling"]
    print("label error (%): " + ", ".join(f"{k} {lab[k]['label_error_percent']:.2f}"
                                          for k in ("rounding", "full_flow", "linearized_flow")))
    print(f"wrote {out}/labeling.png and metrics.json ({metrics['seconds']:.1f} s)")
    return 0
