"""Small matplotlib helpers (atomic PNG output; the user's backend is never changed) shared by commands."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._checks import UserInputError
from .io import save_figure

__all__ = ["image_panel"]


def image_panel(path, images: Sequence[np.ndarray], titles: Sequence[str], *, ncols: int | None = None,
                suptitle: str | None = None, size: float = 3.0, fit: bool = False):
    """Save ``images`` (arrays ``(H, W)`` or ``(H, W, 3)``, uint8 or float in [0, 1]) side by side, ``ncols`` per
    row, with ``titles`` as one PNG; a panel is ``size`` inches wide (and high, unless ``fit``: the aspect ratio
    of the first image)."""
    import matplotlib.pyplot as plt   # the user's backend is left as it is (headless: matplotlib picks Agg)

    if len(images) != len(titles):
        raise UserInputError(f"images and titles must have the same length, got {len(images)} and {len(titles)}")
    n = len(images)
    ncols = ncols or n
    nrows = (n + ncols - 1) // ncols
    height = size * np.asarray(images[0]).shape[0] / np.asarray(images[0]).shape[1] + 0.35 if fit else size
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, height * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), images, titles):
        img = np.asarray(img)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest",
                  vmin=0 if img.ndim == 2 and img.dtype != np.uint8 else None,
                  vmax=1 if img.ndim == 2 and img.dtype != np.uint8 else None)
        ax.set_title(title, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return save_figure(path, fig)
