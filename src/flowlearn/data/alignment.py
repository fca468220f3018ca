"""The facades photographs with hand-made ground truth (9 classes), and the canonicalisation of label ids.

The file ``facades.npz`` (see ``shared/data/README.md``; MIT licence, from the public
repository ``IPA-HD/sigmamodels``) holds ``f``: float (N, H, W, 3) RGB in [0, 1] and ``l``:
int (N, H, W) labels; it is only read when :func:`load_facades` is called with its path.

Some labelled datasets number the classes of every image in its own order (the shipped
``facades.npz`` does: label 2 is the brightest class in image 0 but label 5 in image 2).
Run :func:`align_labels` before any protocol that trains on some images and tests on others.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
import numpy as np
from scipy.optimize import linear_sum_assignment

from .._checks import UserInputError
from ..io import existing_file

__all__ = ["FacadesData", "LabelAlignment", "align_labels", "load_facades"]


@dataclass(frozen=True)
class FacadesData:
    """Facade photographs with ground-truth labelings.

    Attributes
    ----------
    images : ndarray, shape (N, H, W, 3), float64
        RGB images (values as stored, nominally in [0, 1]).
    labels : ndarray, shape (N, H, W), int64
    num_labels : int
        ``max(labels) + 1`` (9 for the shipped file).
    path : str
    """

    images: np.ndarray
    labels: np.ndarray
    num_labels: int
    path: str = ""

    @property
    def num_images(self) -> int:
        """Number of images ``N``."""
        return int(self.images.shape[0])


def load_facades(path) -> FacadesData:
    """Load and validate a facades ``.npz`` file (keys ``f`` images and ``l`` labels).

    Raises ``FileNotFoundError`` for a missing file and a ``ValueError`` naming the path if the file is
    not an npz archive, a key is missing, ``f`` is not a finite real (N, H, W, 3) array, ``l`` is not
    an integer (N, H, W) array matching it, or a label is negative.
    """
    path = existing_file(path, "facades", "an .npz archive with keys 'f' and 'l'")
    where = repr(str(path))
    if not zipfile.is_zipfile(path):
        raise UserInputError(f"facades file {where} is not an .npz (zip) archive; expected one with keys 'f' and 'l'")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserInputError(f"cannot read facades file {where} as .npz: {exc}") from exc
    with archive:
        missing = [key for key in ("f", "l") if key not in archive.files]
        if missing:
            raise UserInputError(f"facades file {where} lacks key(s) {missing}; expected 'f' (images) and 'l' "
                             f"(labels), found {sorted(archive.files)}")
        try:
            images, labels = archive["f"], archive["l"]
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise UserInputError(f"cannot read the arrays of facades file {where}: {exc}") from exc
    if images.dtype == bool or not np.issubdtype(images.dtype, np.number):
        raise UserInputError(f"facades images 'f' in {where} must be real numbers, got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[3] != 3 or min(images.shape) == 0:
        raise UserInputError(f"facades images 'f' in {where} must have shape (N, H, W, 3), got shape {images.shape}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise UserInputError(f"facades labels 'l' in {where} must be integers, got dtype {labels.dtype}")
    if labels.shape != images.shape[:3]:
        raise UserInputError(f"facades labels 'l' in {where} must have shape {images.shape[:3]} (matching 'f'), "
                         f"got shape {labels.shape}")
    images = images.astype(np.float64)
    if not np.all(np.isfinite(images)):
        raise UserInputError(f"facades images 'f' in {where} must be finite, got "
                         f"{int(np.sum(~np.isfinite(images)))} NaN/inf values")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise UserInputError(f"facades labels 'l' in {where} must be >= 0, got minimum {labels.min()}")
    return FacadesData(images=images, labels=labels, num_labels=int(labels.max()) + 1, path=str(path))


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
        After relabelling (NaN for a class absent from an image).
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

    The one-to-one renaming minimises the sum of squared Euclidean distances between class-mean
    colours (Hungarian method, :func:`scipy.optimize.linear_sum_assignment`).

    Parameters
    ----------
    images : array ``(N, H, W, C)``
    labels : int array ``(N, H, W)`` with values in ``0..J-1``
    reference : int
        Index of the image whose label ids are kept; each of its classes needs a pixel.

    Returns
    -------
    LabelAlignment
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
        perms[n, rows] = cols
        costs[n] = float(cost[rows, cols].sum())
        out[n] = perms[n][labels[n]]
        means[n] = _class_means(images[n], out[n], J)
    return LabelAlignment(labels=out, permutations=perms, costs=costs, class_means=means)
