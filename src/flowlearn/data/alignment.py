"""Dataset canonicalisation: make label ids consistent across images by matching class colours.

Some labelled datasets number the classes of every image in its own order (the shipped
``facades.npz`` does: label 2 is the brightest class in image 0 but label 5 in image 2).
:func:`align_labels` renames the labels of every image so that its class-mean colours match those
of a reference image, by an optimal one-to-one assignment (Hungarian method,
:func:`scipy.optimize.linear_sum_assignment`) minimising the sum of squared Euclidean distances
between class-mean colours.  Run it before any protocol that trains on some images and tests on
others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .._checks import UserInputError

__all__ = ["LabelAlignment", "align_labels"]


@dataclass(frozen=True)
class LabelAlignment:
    """Result of :func:`align_labels`.

    Attributes
    ----------
    labels : ndarray ``(N, H, W)`` int64
        Relabelled ground truth (the reference image is unchanged).
    permutations : ndarray ``(N, J)`` int64
        ``permutations[n, j]`` is the new id of old label ``j`` of image ``n``.
    costs : ndarray ``(N,)``
        Sum of squared distances between matched class-mean colours.
    class_means : ndarray ``(N, J, C)``
        Class-mean colours after relabelling (NaN for a class absent from an image).
    """

    labels: np.ndarray
    permutations: np.ndarray
    costs: np.ndarray
    class_means: np.ndarray


def _class_means(image: np.ndarray, labels: np.ndarray, J: int) -> np.ndarray:
    flat, lab = image.reshape(-1, image.shape[-1]), labels.reshape(-1)
    counts = np.bincount(lab, minlength=J).astype(np.float64)
    sums = np.stack([np.bincount(lab, weights=flat[:, c], minlength=J) for c in range(flat.shape[1])], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def align_labels(images, labels, reference: int = 0) -> LabelAlignment:
    """Relabel every image so that its class-mean colours match those of image ``reference``.

    Parameters
    ----------
    images : array ``(N, H, W, C)``
    labels : int array ``(N, H, W)`` with values in ``0..J-1``
    reference : int
        Index of the image whose label ids are kept.

    Returns
    -------
    LabelAlignment

    Raises
    ------
    ValueError
        For mismatched shapes, negative labels, an invalid reference, or a class of the reference
        image without pixels.
    """
    images = np.asarray(images, dtype=np.float64)
    labels = np.asarray(labels)
    if images.ndim != 4:
        raise UserInputError(f"images must have shape (N, H, W, C), got {images.shape}")
    if labels.shape != images.shape[:3]:
        raise UserInputError(f"labels must have shape {images.shape[:3]} (matching images), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise UserInputError("labels must be non-negative integers")
    N = images.shape[0]
    if not (isinstance(reference, (int, np.integer)) and 0 <= reference < N):
        raise UserInputError(f"reference must be an image index in 0..{N - 1}, got {reference!r}")
    J = int(labels.max()) + 1
    ref = _class_means(images[reference], labels[reference], J)
    if np.isnan(ref).any():
        missing = np.nonzero(np.isnan(ref[:, 0]))[0].tolist()
        raise UserInputError(f"reference image {reference} has no pixels of label(s) {missing}")
    out = np.empty_like(labels, dtype=np.int64)
    perms = np.empty((N, J), dtype=np.int64)
    costs = np.zeros(N)
    means = np.empty((N, J, images.shape[-1]))
    for n in range(N):
        cm = _class_means(images[n], labels[n], J)
        cost = ((cm[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
        cost = np.where(np.isnan(cost), 1e6, cost)  # absent classes go anywhere, last
        rows, cols = linear_sum_assignment(cost)
        perm = np.empty(J, dtype=np.int64)
        perm[rows] = cols
        perms[n] = perm
        costs[n] = float(cost[rows, cols].sum())
        out[n] = perm[labels[n]]
        means[n] = _class_means(images[n], out[n], J)
    return LabelAlignment(labels=out, permutations=perms, costs=costs, class_means=means)
