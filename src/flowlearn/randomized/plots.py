"""Pictures of samples, marginals and training curves (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io import save_figure
from ..plotting import image_panel

__all__ = ["PALETTE", "PALETTE_NAMES", "label_legend", "labels_to_rgb", "save_marginals_png", "save_samples_png",
           "save_training_curve", "tile_images"]

#: Label colours (RGB in [0, 1]); label 0 is dark, label 1 light, then distinct hues.
PALETTE = np.array([[0.12, 0.16, 0.35], [0.98, 0.84, 0.35], [0.85, 0.30, 0.25], [0.30, 0.65, 0.35],
                    [0.55, 0.40, 0.75], [0.35, 0.75, 0.85], [0.95, 0.55, 0.20], [0.6, 0.6, 0.6]])
#: Names of the :data:`PALETTE` colours, for legends.
PALETTE_NAMES = ("dark blue", "yellow", "red", "green", "purple", "cyan", "orange", "grey")


def label_legend(num_labels: int) -> str:
    """``"label 0: dark blue, label 1: yellow, ..."`` (colours repeat after 8 labels)."""
    names = [f"{k}: {PALETTE_NAMES[k % len(PALETTE_NAMES)]}" for k in range(num_labels)]
    return "labels " + ", ".join(names) + (" (colours repeat)" if num_labels > len(PALETTE_NAMES) else "")


def labels_to_rgb(labels, grid_shape: tuple[int, int], scale: int = 12) -> np.ndarray:
    """One configuration (n,) as an RGB image (rows*scale, cols*scale, 3), float in [0, 1]."""
    lab = np.asarray(torch.as_tensor(labels).cpu()).reshape(grid_shape)
    return np.kron(PALETTE[lab % len(PALETTE)], np.ones((scale, scale, 1)))


def tile_images(rows: list[list[np.ndarray]], gap: int = 4, background: float = 1.0) -> np.ndarray:
    """Tile equally sized RGB images in a grid with ``gap`` pixels between them."""
    h, w, _ = rows[0][0].shape
    ncols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + gap) - gap, ncols * (w + gap) - gap, 3), background)
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            out[i * (h + gap): i * (h + gap) + h, j * (w + gap): j * (w + gap) + w] = img
    return out


def save_samples_png(path, named_samples: dict, grid_shape: tuple[int, int], *, scale: int = 12,
                     per_row: int = 8, num_labels: int | None = None) -> Path:
    """One row of ``per_row`` samples per entry of ``named_samples`` (name -> (k, n) configs), as in Fig. 2;
    each row is titled with its name, the title is a colour legend of ``num_labels`` labels
    (default: the largest label seen + 1, at least 2)."""
    if num_labels is None:
        num_labels = max([2] + [int(torch.as_tensor(s).max()) + 1 for s in named_samples.values()
                                if torch.as_tensor(s).numel()])
    rows = [tile_images([[labels_to_rgb(s, grid_shape, scale) for s in samples[:per_row]]])
            for samples in named_samples.values()]
    return image_panel(path, rows, [name.replace("_", " ") for name in named_samples], ncols=1,
                       suptitle="samples; " + label_legend(num_labels), size=9.0, fit=True)


def save_marginals_png(path, named_marginals: dict, grid_shape: tuple[int, int], *, scale: int = 12,
                       label: int = 0) -> Path:
    """Marginal probability of ``label`` side by side (name -> (n, c)), as in Fig. 3 (black 0, white 1)."""

    def panel(marginals):   # grey RGB image (rows*scale, cols*scale, 3)
        p = np.asarray(torch.as_tensor(marginals).detach().cpu().double())[:, label].reshape(grid_shape)
        return np.repeat(np.kron(p, np.ones((scale, scale)))[..., None], 3, axis=2)

    return image_panel(path, [panel(m) for m in named_marginals.values()],
                       [name.replace("_", " ") for name in named_marginals],
                       suptitle=f"P(label {label}) per node (black 0, white 1)", fit=True)


def save_training_curve(path, history: list, *, reference: dict | None = None) -> Path:
    """Objective (KL estimate), energy and entropy per iteration (``history``: one dict per
    iteration, as in :class:`~flowlearn.randomized.TrainingResult`); optional horizontal references."""
    import matplotlib.pyplot as plt   # the user's backend is left as it is (headless: matplotlib picks Agg)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key in zip(axes, ("objective", "energy", "entropy")):
        values = np.asarray([h[key] for h in history if key in h], dtype=float)
        if values.size:
            ax.plot(values, lw=0.6, alpha=0.5)
            k = max(1, values.size // 50)
            smooth = np.convolve(values, np.ones(k) / k, mode="valid")
            ax.plot(np.arange(smooth.size) + k // 2, smooth, lw=1.5)
        if reference and key in reference:
            for name, v in reference[key].items():
                ax.axhline(v, ls="--", lw=1, color="gray")
                ax.text(0, v, name, fontsize=7, va="bottom")
        ax.set_title(key)
        ax.set_xlabel("iteration")
        if reference and key in reference:
            ax.legend(["per iteration", "running mean"], fontsize=7, loc="upper right")
    fig.tight_layout()
    return save_figure(path, fig)
