"""Data-efficiency comparison (paper 002, Table 1 left): AE vs GFE-amd vs Mixed over training sizes.

For every training size ``N`` and seed, an AE and a GFE-amd decoder are trained on the same fixed
subset of ``N`` images for the same number of images seen (``images`` per run, ``full_images`` when
``N`` is the whole pool), both with the same optimizer; "Mixed" evaluates the AE's decoder with AMD
encoding.  ``ae_factor`` gives the AE ``ae_factor`` times as many images (the paper trains its AE for
12 epochs against the GFE's one); its cells are then named ``..._ae_x{factor}``.  Each finished
``(size, seed, model)`` cell is stored as ``cells/N{size}_s{seed}_{model}.json`` in the output
directory and skipped when the comparison is run again (resume).  ``table.json`` holds, per size,
the mean and standard deviation over seeds of the validation BCE of every model and the relative
difference GFE-amd vs AE.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .._checks import UserInputError, check_int
from ..io import ensure_out_dir, save_json
from .data import ImageData, training_subset
from .plots import (
    plot_curves,
    plot_data_efficiency,
    reconstructions_for,
    save_reconstruction_grid,
)
from .training import TrainConfig, Trainer

__all__ = ["COMPARE_MODELS", "PAPER_TABLE1", "compare", "summarise"]

COMPARE_MODELS = ("AE", "GFE-amd", "Mixed")

#: Published numbers of paper 002, Table 1 (average validation cross-entropy), for side-by-side reports.
PAPER_TABLE1 = {
    "headers": ("MNIST training images", "AE", "GFE-amd", "Mixed", "GFE vs AE (%)"),
    "rows": [["480 (0.24 %)", 0.2660, 0.2098, 0.2634, 100 * (0.2098 / 0.2660 - 1)],
             ["1920 (0.98 %)", 0.2488, 0.1558, 0.2323, 100 * (0.1558 / 0.2488 - 1)],
             ["5760 (2.9 %)", 0.1954, 0.1136, 0.1829, 100 * (0.1136 / 0.1954 - 1)],
             ["full MNIST", 0.0843, 0.0830, None, 100 * (0.0830 / 0.0843 - 1)],
             ["full SegMNIST (train 0-4, test 5-9)", 0.1205, 0.1135, None, 100 * (0.1135 / 0.1205 - 1)],
             ["full FashionMNIST", 0.2752, 0.2764, None, 100 * (0.2764 / 0.2752 - 1)]],
    "caption": "Paper 002, Table 1 (MNIST 28x28, AE trained ~12x longer than GFE-amd at full size)",
}


def _epochs(size: int, images: int) -> int:
    return max(1, math.ceil(images / size))


def _run_cell(data, size, seed, model, base: TrainConfig, images: int, cell_dir: Path, log):
    cfg = replace(base, model=model, solver="amd", adjoint="approx", seed=seed, epochs=_epochs(size, images))
    idx = training_subset(data, size, seed)
    result = Trainer(cfg).fit(data, idx, out_dir=cell_dir, desc=f"N={size} seed={seed} {model}")
    record = {"size": size, "seed": seed, "model": model, "val_bce": result.val_bce,
              "mixed_val_bce": result.mixed_val_bce, "history": result.history, "stats": result.stats,
              "config": cfg.__dict__}
    log(f"N={size} seed={seed} {model}: val BCE {result.val_bce:.4f}"
        + (f", mixed {result.mixed_val_bce:.4f}" if result.mixed_val_bce is not None else "")
        + f" ({result.stats['wall_time']:.1f} s)")
    return record, result.module


def summarise(records: list, dataset: str) -> dict:
    """``table.json`` content from the cell records."""
    rows = {}
    for size in sorted({r["size"] for r in records}):
        cells = {"AE": [], "GFE-amd": [], "Mixed": []}
        for r in records:
            if r["size"] != size:
                continue
            if r["model"] == "ae":
                cells["AE"].append(r["val_bce"])
                cells["Mixed"].append(r["mixed_val_bce"])
            else:
                cells["GFE-amd"].append(r["val_bce"])
        row = {m: {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v)) if v else None,
                   "n_seeds": len(v), "values": v} for m, v in cells.items()}
        if cells["AE"] and cells["GFE-amd"]:
            row["gfe_vs_ae_relative"] = row["GFE-amd"]["mean"] / row["AE"]["mean"] - 1.0
        rows[str(size)] = row
    return {"dataset": dataset, "models": list(COMPARE_MODELS), "metric": "validation mean per-pixel BCE",
            "rows": rows}


def compare(data: ImageData, train_sizes: Sequence[int], seeds: int, out_dir, *, base: TrainConfig | None = None,
            images: int = 10000, full_images: int = 30000, ae_factor: int = 1, log=print) -> dict:
    """Run (or resume) the comparison and write ``table.json``, ``data_efficiency.png``,
    ``curves_N{size}.png`` and ``reconstructions_N{size}.png`` to ``out_dir``.

    Parameters
    ----------
    train_sizes : sizes of the training subsets (each at most the pool size)
    seeds : number of seeds (0 .. seeds-1); the seed fixes subset, initialisation and batch order
    base : TrainConfig
        Optimizer, batch size, evaluation cadence; model/solver/seed/epochs are set per cell.
    images, full_images : images seen per run (``full_images`` when the size is the whole pool)
    ae_factor : int
        The AE sees ``ae_factor`` times more images than the GFE.
    """
    base = base or TrainConfig()
    seeds = check_int("seeds", seeds, minimum=1)
    images = check_int("images", images, minimum=1)
    full_images = check_int("full_images", full_images, minimum=1)
    ae_factor = check_int("ae_factor", ae_factor, minimum=1)
    pool = len(data.train)
    sizes = [check_int("train size", s, minimum=1, maximum=pool) for s in train_sizes]
    if not sizes:
        raise UserInputError("train_sizes must name at least one size")
    out = ensure_out_dir(out_dir)
    cells = ensure_out_dir(out / "cells")
    records = []
    for size in sizes:
        budget = full_images if size == pool else images
        modules, histories = {}, {}
        for seed in range(seeds):
            for model in ("ae", "gfe"):
                suffix = f"_x{ae_factor}" if model == "ae" and ae_factor > 1 else ""
                path = cells / f"N{size}_s{seed}_{model}{suffix}.json"
                if path.exists():
                    record = json.loads(path.read_text())
                    log(f"N={size} seed={seed} {model}: done (val BCE {record['val_bce']:.4f}), skipped")
                    module = None
                else:
                    cell_budget = budget * ae_factor if model == "ae" else budget
                    record, module = _run_cell(data, size, seed, model, base, cell_budget,
                                               ensure_out_dir(cells / path.stem), log)
                    save_json(path, record)
                records.append(record)
                if seed == 0:
                    histories["AE" if model == "ae" else "GFE-amd"] = record["history"]
                    if module is not None:
                        modules["AE" if model == "ae" else "GFE-amd"] = module
        plot_curves(out / f"curves_N{size}.png", histories)
        if len(modules) == 2:
            rows = reconstructions_for(modules, data.val[:12])
            save_reconstruction_grid(out / f"reconstructions_N{size}.png", rows, data.image_shape)
        table = summarise(records, data.name)
        table["protocol"] = {"images_per_run": images, "full_images": full_images, "ae_factor": ae_factor,
                             "pool_size": pool,
                             "val_size": len(data.val), "optimizer": base.optimizer, "lr": base.learning_rate,
                             "batch_size": base.batch_size, "seeds": seeds}
        save_json(out / "table.json", table)
    plot_data_efficiency(out / "data_efficiency.png", table)
    return table
