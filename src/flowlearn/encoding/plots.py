"""Figures of gradient flow encoding runs: validation curves (paper Fig. 1), reconstruction grids
(Fig. 3) and the data-efficiency plot of :mod:`flowlearn.experiments.gfe_data_efficiency`."""

from __future__ import annotations

import numpy as np
import torch

from ..io import save_figure, save_png

__all__ = ["class_spread_sample", "plot_curves", "plot_data_efficiency", "reconstruction_grid",
           "save_reconstruction_grid"]


def _figure(nrows: int, ncols: int, figsize):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)


def plot_curves(path, histories: dict) -> None:
    """Validation BCE against images seen (left) and wall time (right) for ``{label: history}``."""
    fig, axes = _figure(1, 2, (10.0, 3.6))
    for ax, key, xlabel in zip(axes[0], ("images_seen", "wall_time"),
                               ("training images seen", "training time (s, evaluation excluded)")):
        for label, hist in histories.items():
            if hist:
                ax.plot([h[key] for h in hist], [h["val_bce"] for h in hist], marker=".", label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation mean BCE")
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(path, fig)


def reconstruction_grid(rows: list, image_shape, *, pad: int = 1) -> np.ndarray:
    """Tile rows of images ``[(n, P) tensors]`` into one grey image (one row of tiles per entry)."""
    h, w = image_shape
    n = max(int(r.shape[0]) for r in rows)
    grid = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad))
    for i, r in enumerate(rows):
        arr = r.detach().cpu().double().numpy().reshape(-1, h, w)
        for j, img in enumerate(arr):
            y0, x0 = pad + i * (h + pad), pad + j * (w + pad)
            grid[y0:y0 + h, x0:x0 + w] = img
    return grid


def class_spread_sample(data, n: int = 12) -> torch.Tensor:
    """Indices of ``n`` fixed validation images spread over the classes (round ``k`` takes each class's
    ``k``-th validation image), so a class-sorted set still shows every class."""
    labels = data.val_labels.cpu()
    classes = sorted(set(labels.tolist()))
    per_class = {c: (labels == c).nonzero().flatten().tolist() for c in classes}
    out, k = [], 0
    while len(out) < min(n, len(labels)):
        for c in classes:
            if k < len(per_class[c]) and len(out) < n:
                out.append(per_class[c][k])
        k += 1
    return torch.tensor(out, dtype=torch.long)


def _labelled_grid(path, rows, image_shape, labels, losses: bool) -> None:
    from .losses import BCE

    n = max(int(r.shape[0]) for r in rows)
    fig, axes = _figure(len(rows), n, (0.9 * n + 1.2, 1.05 * len(rows)))
    target = rows[0].detach().cpu().reshape(rows[0].shape[0], -1).double().clamp(0, 1)
    for i, r in enumerate(rows):
        flat = r.detach().cpu().reshape(r.shape[0], -1).double()
        per = BCE()(flat.clamp(1e-7, 1 - 1e-7), target[:len(flat)]) if losses and i > 0 else None
        for j in range(n):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(flat):
                ax.imshow(flat[j].reshape(image_shape).numpy(), cmap="gray", vmin=0, vmax=1)
                if per is not None:
                    ax.set_title(f"{float(per[j]):.3f}", fontsize=6, pad=1)
        axes[i, 0].set_ylabel(labels[i] if i < len(labels) else "", fontsize=8, rotation=0, ha="right", va="center")
    if losses:
        fig.suptitle("per-image BCE above each reconstruction", fontsize=8)
    save_figure(path, fig)


def save_reconstruction_grid(path, rows: list, image_shape, *, scale: int | None = None, labels=None,
                             losses: bool = False) -> None:
    """Write :func:`reconstruction_grid` as a PNG, upscaled so small images stay visible; with ``labels`` (one
    per row), a labelled figure instead, with the per-image BCE against the first row when ``losses``."""
    if labels is not None:
        _labelled_grid(path, rows, image_shape, list(labels), losses)
        return
    grid = reconstruction_grid(rows, image_shape)
    scale = scale or max(1, 160 // max(image_shape))
    save_png(path, np.kron(grid, np.ones((scale, scale))))


def plot_data_efficiency(path, table: dict) -> None:
    """Mean validation BCE (+- std over seeds) against training-set size for every model."""
    fig, axes = _figure(1, 1, (5.5, 3.8))
    ax = axes[0, 0]
    sizes = sorted(int(s) for s in table["rows"])
    for model in table["models"]:
        mean = [table["rows"][str(s)][model]["mean"] for s in sizes]
        std = [table["rows"][str(s)][model]["std"] for s in sizes]
        ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=3, label=model)
    ax.set_xscale("log")
    ax.set_xlabel("training images (subset size)")
    ax.set_ylabel("validation mean BCE")
    ax.set_title(f"data efficiency on {table['dataset']}")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(path, fig)


def reconstructions_for(models: dict, images: torch.Tensor) -> list:
    """``[images, recon_model_1, ...]`` for the grid; each model is a GFE or an AE."""
    from .encoder import GradientFlowEncoder

    with torch.no_grad():
        return [images] + [m.reconstruct(images) if isinstance(m, GradientFlowEncoder) else m(images)
                           for m in models.values()]
