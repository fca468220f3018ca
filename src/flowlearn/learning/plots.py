"""Pictures of parameter learning: training curves (paper Fig. 2), weight-patch mosaics (Fig. 5d/e),
per-pixel cosine and gradient-norm maps (Fig. 3), singular values and parameter studies (Fig. 4)."""

from __future__ import annotations

import numpy as np
import torch

from ..io import save_figure

__all__ = ["patch_mosaic", "plot_curves", "plot_gradient_maps", "plot_series"]


def _figure(ncols=1, width=4.6, height=3.5):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)


def patch_mosaic(patches, height: int, width: int, size: int = 3, *, crop: int = 48, gap: int = 1) -> np.ndarray:
    """Mosaic of the weight patches of the top-left ``crop x crop`` pixels, as a grey image in [0, 1].

    Every pixel becomes its ``size x size`` patch (scaled by the largest weight shown), separated by
    ``gap`` black pixels -- the display of the paper's Fig. 5d/e.
    """
    p = patches.detach().cpu().double().numpy() if isinstance(patches, torch.Tensor) else np.asarray(patches)
    p = p.reshape(height, width, size, size)
    h, w = min(crop, height), min(crop, width)
    p = p[:h, :w]
    p = p / max(float(p.max()), 1e-12)
    cell = size + gap
    out = np.zeros((h * cell + gap, w * cell + gap))
    for r in range(h):
        for c in range(w):
            out[gap + r * cell: gap + r * cell + size, gap + c * cell: gap + c * cell + size] = p[r, c]
    return out


def plot_curves(path, histories: dict, *, title: str = "") -> None:
    """Loss and label error (percent) per iteration and against seconds for ``{method: history}`` (Fig. 2)."""
    fig, axes = _figure(3)
    for label, hist in histories.items():
        if not hist:
            continue
        it = [h["iteration"] for h in hist]
        axes[0, 0].plot(it, [h["loss"] for h in hist], label=label)
        axes[0, 1].plot(it, [h["label_error"] for h in hist], label=label)
        axes[0, 2].plot([h["seconds"] for h in hist], [h["label_error"] for h in hist], label=label)
    for ax, (xl, yl) in zip(axes[0], [("iteration", "loss"), ("iteration", "label error (%)"),
                                      ("seconds", "label error (%)")]):
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    save_figure(path, fig)


def plot_gradient_maps(path, cosine_map: np.ndarray, norm_map: np.ndarray, *, names=("a", "b"),
                       threshold: float = 0.9) -> None:
    """Fig. 3: per-pixel cosine map, its histogram, and the gradient-norm map (log scale)."""
    fig, axes = _figure(3)
    im = axes[0, 0].imshow(cosine_map, cmap="viridis", vmin=-1, vmax=1)
    axes[0, 0].set_title(f"cosine({names[0]}, {names[1]}) per pixel")
    fig.colorbar(im, ax=axes[0, 0], fraction=0.046)
    vals = cosine_map[np.isfinite(cosine_map)]
    axes[0, 1].hist(vals, bins=np.linspace(-1, 1, 81))
    axes[0, 1].axvline(threshold, color="r", ls="--")
    axes[0, 1].set_yscale("log")
    axes[0, 1].set_title(f"{100 * np.mean(vals >= threshold):.2f} % of all pixels >= {threshold}")
    im = axes[0, 2].imshow(np.log10(np.maximum(norm_map, 1e-300)), cmap="magma")
    axes[0, 2].set_title(f"log10 |grad| ({names[1]})")
    fig.colorbar(im, ax=axes[0, 2], fraction=0.046)
    for ax in (axes[0, 0], axes[0, 2]):
        ax.axis("off")
    save_figure(path, fig)


def plot_series(path, series: dict, *, xlabel: str, ylabel: str, logy: bool = False, title: str = "") -> None:
    """Line plot of ``{label: (x, y)}`` (singular values, Krylov-dimension and T studies)."""
    fig, axes = _figure(1, width=5.5)
    ax = axes[0, 0]
    for label, (x, y) in series.items():
        ax.plot(x, y, marker=".", label=str(label))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    save_figure(path, fig)
