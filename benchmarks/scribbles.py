"""Seeded scribbles: sparse training labels drawn from full membrane labels (1 = membrane, 0 = cell).

A user who labels by scribbling draws a few thin strokes along membranes and inside cells.  We imitate
that: the membrane strokes are short pieces of the membrane's skeleton (its 1-pixel centre line), the cell
strokes short pieces of the skeleton of the cell interiors eroded by ``erode`` pixels (so that they keep
away from the membranes).  A piece is the part of a skeleton inside a ``(2 stroke + 1)``-pixel square
around a random skeleton pixel; pieces are added in random order until each class holds
``fraction / 2`` of the image's pixels (the last piece may overshoot by a few pixels).  ``width = 2``
thickens the strokes by one pixel inside their class.  Every other pixel is set to ``ignore``.  The strokes
lie inside their class by construction, so every scribble pixel carries its true label.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IGNORE", "scribbles"]

#: the label of unlabelled pixels
IGNORE = 255


def _strokes(skeleton, mask, target, rng, stroke, width):
    """Pieces of ``skeleton`` (within ``mask``) around random skeleton pixels until ``target`` pixels."""
    from scipy import ndimage

    chosen = np.zeros(skeleton.shape, bool)
    coords = np.argwhere(skeleton)
    if len(coords) == 0 or target <= 0:
        return chosen
    count = 0
    for y, x in coords[rng.permutation(len(coords))]:
        win = (slice(max(y - stroke, 0), y + stroke + 1), slice(max(x - stroke, 0), x + stroke + 1))
        piece = skeleton[win] & ~chosen[win]
        if width > 1:
            piece = ndimage.binary_dilation(piece, np.ones((width, width), bool)) & mask[win] & ~chosen[win]
        chosen[win] |= piece
        count += int(piece.sum())
        if count >= target:
            break
    return chosen


def scribbles(labels, fraction: float = 0.01, *, seed: int = 0, stroke: int = 6, erode: int = 4, width: int = 1,
              ignore: int = IGNORE) -> np.ndarray:
    """Sparse labels with about ``fraction`` of the pixels of each image labelled, as thin strokes.

    Parameters
    ----------
    labels : int array ``(H, W)`` or ``(N, H, W)``, 1 = membrane, 0 = cell interior
    fraction : float in (0, 1), the labelled fraction per image (half membrane, half cell)
    seed : int, seed of the random strokes (images in a stack are drawn one after another)
    stroke : int, half-side of the square that cuts a piece out of a skeleton (pieces of about
        ``2 stroke`` pixels)
    erode : int, radius (pixels) by which the cells are eroded before their skeleton is taken
    width : int, 1 or 2, stroke width in pixels
    ignore : int, the value of unlabelled pixels (not 0 or 1)

    Returns
    -------
    int64 array of the shape of ``labels``: 0 or 1 on the strokes, ``ignore`` elsewhere
    """
    from scipy import ndimage
    from skimage.morphology import disk, skeletonize

    labels = np.asarray(labels)
    if not 0 < fraction < 1 or ignore in (0, 1) or width not in (1, 2):
        raise ValueError(f"need 0 < fraction < 1, ignore not in (0, 1), width 1 or 2; got {fraction}, {ignore}, "
                         f"{width}")
    stack = labels[None] if labels.ndim == 2 else labels
    rng = np.random.default_rng(seed)
    out = np.full(stack.shape, ignore, np.int64)
    for k, lab in enumerate(stack):
        membrane, cells = lab == 1, lab == 0
        target = fraction * lab.size / 2
        interior = ndimage.binary_erosion(cells, disk(erode)) if erode > 0 else cells
        for value, skeleton, mask in ((1, skeletonize(membrane), membrane), (0, skeletonize(interior), cells)):
            out[k][_strokes(skeleton, mask, target, rng, stroke, width)] = value
    return out if labels.ndim == 3 else out[0]
