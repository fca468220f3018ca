"""Data-efficiency comparison (paper 002, Table 1 left): AE, GFE-amd, Mixed and baselines over training sizes.

``flowlearn gfe compare`` and ``flowlearn reproduce`` (part ``encoding``) run :func:`compare`.

Two protocols (``protocol=``):

* ``"subset"``: a fixed subset of ``N`` images (seeded), revisited in reshuffled passes until the run
  has seen exactly ``images`` images (``full_images`` when ``N`` is the whole pool) -- taken
  literally, the last pass may be partial;
* ``"seen"``: ``N`` is the number of images *seen in total*, every batch drawn with replacement
  from the whole training pool (fewer than one pass allowed; ``images`` is not used) -- the
  paper's most likely reading (its AE at 480 images equals a one-pass AE).

Models trained per ``(N, seed)`` (``models=``): ``"ae"`` (rows AE, Mixed = its decoder with AMD codes
from 0, and Refined-AE = AMD codes started at its encoder's code), ``"gfe-amd"``, ``"gfe-bb"`` (the
Barzilai--Borwein solver) and ``"auto-decoder"`` (fixed-step gradient descent on z from 0: 50 Euler
steps of size 3, ``solver="euler"``, for training and evaluation).  All use the same optimizer and
batches.  ``ae_factor`` gives the AE ``ae_factor`` times as many images (cells ``..._ae_x{factor}``).
Each finished cell is stored as ``cells/[seen_]N{size}_s{seed}_{model}.json`` and skipped when the
comparison is run again (resume).  ``table.json`` holds per size the mean and standard deviation over
seeds of every row and the relative difference GFE-amd vs AE.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .._checks import UserInputError, check_choice, check_int
from ..encoding.data import ImageData, training_subset
from ..encoding.encoder import GradientFlowEncoder
from ..encoding.plots import (class_spread_sample, plot_curves, plot_data_efficiency, reconstructions_for,
                              save_reconstruction_grid)
from ..encoding.training import TrainConfig, Trainer
from ..io import ensure_out_dir, save_json

__all__ = ["COMPARE_ROWS", "DEFAULT_MODELS", "PAPER_TABLE1", "PROTOCOLS", "TRAINED_MODELS", "compare",
           "summarise"]

#: The two protocols of :func:`compare` (``protocol=``), see the module docstring.
PROTOCOLS = ("subset", "seen")
#: trained model -> (cell suffix, config overrides, table row)
TRAINED_MODELS = {
    "ae": ("ae", dict(model="ae", solver="amd"), "AE"),
    "gfe-amd": ("gfe", dict(model="gfe", solver="amd"), "GFE-amd"),
    "gfe-bb": ("gfe-bb", dict(model="gfe", solver="bb"), "GFE-bb"),
    "auto-decoder": ("ad", dict(model="gfe", solver="euler", grid="linear", t1=150.0, steps=50), "auto-decoder"),
}
#: Rows of the comparison table, in report order (the AE also gives Mixed and Refined-AE).
COMPARE_ROWS = ("AE", "GFE-amd", "Mixed", "Refined-AE", "GFE-bb", "auto-decoder")
#: Models :func:`compare` trains by default (``models=``): AE and GFE-amd.
DEFAULT_MODELS = ("ae", "gfe-amd")

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


def _refined(ae, val, amd, batch_size=512) -> float:
    """Mean BCE of the AE's decoder with AMD codes started at its encoder's code (test-time refinement)."""
    gfe = GradientFlowEncoder(ae.decoder, int(ae.encode(val[:1]).shape[1]), amd=amd)
    total = 0.0
    for chunk in val.split(batch_size):
        with torch.no_grad():
            z0 = ae.encode(chunk)
        total += float(gfe.encode(chunk, z0=z0).loss.sum())
    return total / len(val)


def _run_cell(data, size, seed, model, base: TrainConfig, images: int, protocol: str, cell_dir: Path, log):
    seen = protocol == "seen"
    cfg = replace(base, adjoint="approx", seed=seed, images=size if seen else images,
                  sampling="replacement" if seen else "epochs", **TRAINED_MODELS[model][1])
    idx = None if seen else training_subset(data, size, seed)
    trainer = Trainer(cfg)
    result = trainer.fit(data, idx, out_dir=cell_dir, desc=f"{protocol} N={size} seed={seed} {model}")
    refined = _refined(result.module, data.val, trainer.amd) if model == "ae" else None
    record = {"size": size, "seed": seed, "model": model, "protocol": protocol, "val_bce": result.val_bce,
              "mixed_val_bce": result.mixed_val_bce, "refined_val_bce": refined, "history": result.history,
              "stats": result.stats, "config": cfg.__dict__}
    log(f"{protocol} N={size} seed={seed} {model}: val BCE {result.val_bce:.4f}"
        + (f", mixed {result.mixed_val_bce:.4f}, refined {refined:.4f}" if refined is not None else "")
        + f" ({result.stats['images_seen']} images, {result.stats['wall_time']:.1f} s)")
    return record, result.module


def _row_values(record) -> dict:
    model = record.get("model")
    model = {"gfe": "gfe-amd"}.get(model, model)
    if model == "ae":
        out = {"AE": record["val_bce"], "Mixed": record["mixed_val_bce"]}
        if record.get("refined_val_bce") is not None:
            out["Refined-AE"] = record["refined_val_bce"]
        return out
    return {TRAINED_MODELS[model][2]: record["val_bce"]}


def summarise(records: list, dataset: str) -> dict:
    """``table.json`` content from the cell records."""
    rows, present = {}, set()
    for size in sorted({r["size"] for r in records}):
        cells = {m: [] for m in COMPARE_ROWS}
        for r in records:
            if r["size"] == size:
                for name, value in _row_values(r).items():
                    cells[name].append(value)
        present |= {m for m, v in cells.items() if v}
        row = {m: {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v)) if v else None,
                   "n_seeds": len(v), "values": v} for m, v in cells.items()}
        if cells["AE"] and cells["GFE-amd"]:
            row["gfe_vs_ae_relative"] = row["GFE-amd"]["mean"] / row["AE"]["mean"] - 1.0
        rows[str(size)] = row
    return {"dataset": dataset, "models": [m for m in COMPARE_ROWS if m in present],
            "metric": "validation mean per-pixel BCE", "rows": rows}


def compare(data: ImageData, train_sizes: Sequence[int], seeds: int, out_dir, *, base: TrainConfig | None = None,
            images: int = 10000, full_images: int = 30000, ae_factor: int = 1, protocol: str = "subset",
            models: Sequence[str] = DEFAULT_MODELS, log=print) -> dict:
    """Run (or resume) the comparison (module docstring) and write ``table.json``, ``data_efficiency.png``,
    ``curves_N{size}.png`` and ``reconstructions_N{size}.png`` to ``out_dir``; returns the table.

    Parameters
    ----------
    data : ImageData
        Training pool and validation images.
    train_sizes : sequence of int
        Training-subset sizes (``"subset"``: each at most the pool) or images seen in total (``"seen"``).
    seeds : int
        Number of seeds (0 .. seeds-1); the seed fixes subset, initialisation and batch order.
    base : TrainConfig
        Optimizer, batch size, evaluation cadence; model/solver/seed/epochs are set per cell.
    images, full_images : int
        Images seen per run (``full_images`` when the size is the whole pool), protocol ``"subset"`` only.
    ae_factor : int
        The AE sees ``ae_factor`` times more images than the GFE.
    protocol : {"subset", "seen"}
    models : sequence of str
        Names of :data:`TRAINED_MODELS`.
    """
    base = base or TrainConfig()
    seeds = check_int("seeds", seeds, minimum=1)
    images = check_int("images", images, minimum=1)
    full_images = check_int("full_images", full_images, minimum=1)
    ae_factor = check_int("ae_factor", ae_factor, minimum=1)
    check_choice("protocol", protocol, PROTOCOLS)
    models = list(models)
    for m in models:
        check_choice("models entry", m, tuple(TRAINED_MODELS))
    if not models:
        raise UserInputError("models must name at least one model")
    pool = len(data.train)
    sizes = [check_int("train size", s, minimum=1, maximum=pool if protocol == "subset" else None)
             for s in train_sizes]
    if not sizes:
        raise UserInputError("train_sizes must name at least one size")
    out = ensure_out_dir(out_dir)
    cells = ensure_out_dir(out / "cells")
    records = []
    prefix = "seen_" if protocol == "seen" else ""
    for size in sizes:
        budget = full_images if size == pool else images
        modules, histories = {}, {}
        for seed in range(seeds):
            for model in models:
                suffix = f"_x{ae_factor}" if model == "ae" and ae_factor > 1 else ""
                path = cells / f"{prefix}N{size}_s{seed}_{TRAINED_MODELS[model][0]}{suffix}.json"
                label = TRAINED_MODELS[model][2]
                if path.exists():
                    record = json.loads(path.read_text())
                    log(f"{protocol} N={size} seed={seed} {model}: done (val BCE {record['val_bce']:.4f}), skipped")
                    module = None
                else:
                    run_size = size * ae_factor if model == "ae" and protocol == "seen" else size
                    cell_budget = budget * ae_factor if model == "ae" else budget
                    record, module = _run_cell(data, run_size, seed, model, base, cell_budget, protocol,
                                               ensure_out_dir(cells / path.stem), log)
                    record["size"] = size
                    save_json(path, record)
                records.append(record)
                if seed == 0:
                    histories[label] = record["history"]
                    if module is not None:
                        modules[label] = module
        plot_curves(out / f"curves_N{size}.png", histories)
        if len(modules) == len(models) and len(modules) > 1:
            sample = class_spread_sample(data, 12)
            rows = reconstructions_for(modules, data.val[sample])
            save_reconstruction_grid(out / f"reconstructions_N{size}.png", rows, data.image_shape,
                                     labels=["input", *modules], losses=True)
        table = summarise(records, data.name)
        table["protocol"] = {"protocol": protocol, "models": models,
                             "images_per_run": images if protocol == "subset" else "= size (seen)",
                             "full_images": full_images, "ae_factor": ae_factor, "pool_size": pool,
                             "val_size": len(data.val), "optimizer": base.optimizer, "lr": base.learning_rate,
                             "batch_size": base.batch_size, "seeds": seeds}
        save_json(out / "table.json", table)
    plot_data_efficiency(out / "data_efficiency.png", table)
    return table
