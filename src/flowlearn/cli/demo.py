"""``flowlearn demo``: a two-minute tour of the three parts of flowlearn.

1. Labeling a noisy Voronoi image by rounding, the full and the linearized assignment flow (``labeling.png``).
2. A randomized assignment flow on the 3x8 Ising model of paper 001 beside mean field and the exact marginals
   (``ising_samples.png``, ``ising_marginals.png``).
3. Gradient flow encoding of scikit-learn's digits (``digits_reconstructions.png``).

``metrics.json`` holds the numbers of each part.
"""

from __future__ import annotations

import time

import torch

from ..data import colorize_labels, make_voronoi, nearest_prototype_labels
from ..data.images import to_display
from ..encoding import TrainConfig, Trainer, load_dataset, training_subset
from ..encoding.plots import reconstructions_for, save_reconstruction_grid
from ..engine import RunDirectory
from ..evaluation import label_error
from ..experiments.table1 import IsingExperimentConfig, run_ising_experiment
from ..io import save_json, save_npy, save_png
from ..labeling import label
from ..plotting import image_panel
from ..randomized.plots import save_marginals_png, save_samples_png


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
    t0 = time.perf_counter()
    maps = {"rounding": nearest_prototype_labels(v.image, v.prototypes)}
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
                ["noisy image", "ground truth"]
                + [f"{k.replace('_', ' ')}: {metrics[k]['label_error_percent']:.1f} % wrong" for k in maps],
                suptitle="Assignment-flow labeling (uniform 3x3 weights)")
    return metrics


def ising_demo(out, seed: int = 0) -> dict:
    """Short training of a randomized assignment flow on the Table 1 Ising model."""
    config = IsingExperimentConfig(iterations=800, eval_samples=50_000, mean_field_restarts=100,
                                   gibbs_samples=20_000, gibbs_chains=200, seed=seed)
    res = run_ising_experiment(config, show_progress=False)
    grid = res.model.grid_shape
    save_samples_png(out / "ising_samples.png",
                     {k: res.samples[k] for k in ("mean_field", "randomized_af", "gibbs")}, grid)
    save_marginals_png(out / "ising_marginals.png",
                       {k: res.marginals[k] for k in ("exact", "randomized_af", "mean_field")}, grid)
    return {"model": "Ising 3x8, field 3, coupling 2.1", "iterations": config.iterations,
            "table": {k: res.table[k] for k in ("exact", "randomized_af", "mean_field")}}


def digits_demo(out, seed: int = 0, train_size: int = 500, images: int = 6000) -> dict:
    """Train a small GFE decoder on scikit-learn's digits (AMD encoding, approximate gradient)
    and save reconstructions of held-out digits; returns the validation BCE and timings."""
    data = load_dataset("digits")
    idx = training_subset(data, train_size, seed)
    epochs = max(1, -(-images // train_size))
    cfg = TrainConfig(model="gfe", solver="amd", adjoint="approx", optimizer="adam", lr=3e-3,
                      epochs=epochs, batch_size=32, eval_every=10**6, seed=seed)
    t0 = time.perf_counter()
    result = Trainer(cfg).fit(data, idx, desc="digits GFE")
    recs = reconstructions_for({"GFE-amd": result.module}, data.val[:12])
    save_reconstruction_grid(out / "digits_reconstructions.png", recs, data.image_shape,
                             labels=["held-out digit", "GFE-amd reconstruction"], losses=True)
    return {"dataset": "digits (scikit-learn, 8x8)", "train_size": train_size, "epochs": epochs,
            "validation_bce": result.val_bce, "validation_images": int(len(data.val)),
            "seconds": time.perf_counter() - t0}


def run(args) -> int:
    make_voronoi(args.size, scenario="colors", seed=args.seed)  # a bad --size/--seed fails before any output (~10 ms)
    with RunDirectory(args.out, command="demo", config={"size": args.size, "seed": args.seed},
                      seed=args.seed, overwrite=True, option="--out") as run_dir:  # a tour: always replaced
        out, t0, threads = run_dir.path, time.perf_counter(), torch.get_num_threads()
        print("[1/3] labeling a noisy Voronoi image ...", flush=True)
        metrics = {"labeling": labeling_demo(out, size=args.size, seed=args.seed)}
        lab = metrics["labeling"]
        print("      label error (%): " + ", ".join(f"{k} {lab[k]['label_error_percent']:.2f}"
                                                    for k in ("rounding", "full_flow", "linearized_flow")))
        torch.set_num_threads(1)  # the small models of parts 2 and 3 run fastest on one thread
        try:
            print("[2/3] randomized assignment flow on the Ising model of paper 001 ...", flush=True)
            metrics["ising"] = ising_demo(out, seed=args.seed)
            tab = metrics["ising"]["table"]
            print(f"      KL to the Gibbs distribution: randomized AF {tab['randomized_af']['kl']:.3f}, "
                  f"mean field {tab['mean_field']['kl']:.3f}")
            print("[3/3] gradient flow encoding of digits ...", flush=True)
            metrics["digits"] = digits_demo(out, seed=args.seed)
            print(f"      validation BCE {metrics['digits']['validation_bce']:.4f}")
        finally:
            torch.set_num_threads(threads)
        metrics["seconds"] = time.perf_counter() - t0
        save_json(out / "metrics.json", metrics)
        print(f"wrote {out}: labeling.png, ising_samples.png, ising_marginals.png, digits_reconstructions.png, "
              f"metrics.json ({metrics['seconds']:.0f} s)")
    return 0
