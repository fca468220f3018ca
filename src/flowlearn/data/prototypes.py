"""Label prototypes ``l_j`` (the points the data distances ``D_ij = d(f_i, l_j)`` refer to) and the
pixel-wise rounding to the nearest one."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .._checks import UserInputError, UserTypeError, check_int
from ..io import check_npy, existing_file
from .images import _to_numpy

__all__ = ["class_mean_prototypes", "kmeans_prototypes", "load_prototypes", "nearest_prototype_labels"]


def _parse_text(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise UserInputError(f"cannot parse prototypes file {str(path)!r}: not a text file") from exc
    try:
        return np.loadtxt(io.StringIO(text.replace(",", " ")), dtype=np.float64, comments="#", ndmin=2)
    except ValueError as exc:
        raise UserInputError(f"cannot parse prototypes file {str(path)!r}: {exc}") from exc


def load_prototypes(path, channels=None) -> np.ndarray:
    """Read label prototypes, float64 ``(J, C)``, one row per label, with ``C == channels`` if given.

    ``path`` is a ``.npy`` array of shape (J, C) or (J,) (``C = 1``), or a text file with one row per
    label, values separated by whitespace or commas; ``#`` starts a comment.
    """
    path = existing_file(path, "prototypes", "a .npy or text file")
    if channels is not None:
        channels = check_int("channels", channels, minimum=1)
    if path.suffix.lower() == ".npy":
        check_npy(path, f"prototypes file {str(path)!r}")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise UserInputError(f"cannot parse prototypes file {str(path)!r} as .npy: {exc}") from exc
        if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise UserInputError(f"prototypes in {str(path)!r} must be real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64).reshape(-1, 1) if arr.ndim == 1 else arr.astype(np.float64)
    else:
        arr = _parse_text(path)
    if arr.ndim != 2:
        raise UserInputError(f"prototypes in {str(path)!r} must have shape (J, C) or (J,), got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise UserInputError(f"prototypes in {str(path)!r} must have at least 2 rows (labels), got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise UserInputError(f"prototypes in {str(path)!r} must have at least 1 column, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        n = int(np.sum(~np.isfinite(arr)))
        raise UserInputError(f"prototypes in {str(path)!r} must be finite, got {n} NaN/inf values")
    if channels is not None and arr.shape[1] != channels:
        raise UserInputError(f"prototypes in {str(path)!r} must have {channels} channels (columns), "
                             f"got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _pixels(image) -> np.ndarray:
    """(H, W, C) or (N, C) array-like -> finite float64 (N, C)."""
    arr = _to_numpy(image)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise UserTypeError(f"image must be a real array, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise UserInputError(f"image must have shape (H, W, C) or (N, C), got shape {arr.shape}")
    pixels = arr.reshape(-1, arr.shape[-1]).astype(np.float64)
    if pixels.shape[1] == 0:
        raise UserInputError(f"image must have at least one channel, got shape {arr.shape}")
    if not np.all(np.isfinite(pixels)):
        raise UserInputError(f"image must be finite, got {int(np.sum(~np.isfinite(pixels)))} NaN/inf values")
    return pixels


def kmeans_prototypes(image, k: int, seed: int = 0, n_init: int = 4) -> np.ndarray:
    """Prototypes as the k-means centres of the pixel values (Lloyd / k-means++).

    Minimises ``sum_i min_j ||f_i - l_j||^2`` over the centres ``l_j`` with scikit-learn's
    :class:`~sklearn.cluster.KMeans` (``n_init`` k-means++ restarts, best inertia kept); the
    centres are sorted lexicographically, so the result does not depend on the cluster numbering.

    Parameters
    ----------
    image : array-like or torch.Tensor, shape (H, W, C) or (N, C)
        Pixel values or any feature vectors; they must hold at least ``k`` distinct values.
    k, seed, n_init : int
        Number of prototypes, random state (the result is deterministic for a given seed), restarts.

    Returns
    -------
    ndarray, shape (k, C), float64
    """
    from sklearn.cluster import KMeans

    pixels = _pixels(image)
    k = check_int("k", k, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    n_init = check_int("n_init", n_init, minimum=1)
    if k > pixels.shape[0]:
        raise UserInputError(f"k must be <= the number of pixels ({pixels.shape[0]}), got {k}")
    distinct = np.unique(pixels, axis=0).shape[0]
    if distinct < k:
        raise UserInputError(f"k must be <= the number of distinct pixel values ({distinct}), got {k}")
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(pixels)
    centres = np.asarray(model.cluster_centers_, dtype=np.float64)
    order = np.lexsort(centres.T[::-1])
    return np.ascontiguousarray(centres[order])


def class_mean_prototypes(image, labels, num_labels=None) -> np.ndarray:
    """Prototypes as class means: ``l_j = mean{ f_i : labels_i = j }``; every class needs a pixel.

    Parameters
    ----------
    image : array-like or torch.Tensor, shape (H, W, C) (or (N, C))
    labels : integer array, shape ``image.shape[:-1]``, values in ``0..J-1``
    num_labels : int, optional
        ``J``; default ``max(labels) + 1``.

    Returns
    -------
    ndarray, shape (J, C), float64
    """
    pixels = _pixels(image)
    lab = _to_numpy(labels)
    if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
        raise UserTypeError(f"labels must be an integer array, got dtype {lab.dtype}")
    image_shape = _to_numpy(image).shape
    if lab.shape != image_shape[:-1]:
        raise UserInputError(f"labels must have shape {image_shape[:-1]} (the image's without channels), "
                         f"got shape {lab.shape}")
    lab = lab.reshape(-1).astype(np.int64)
    if lab.size == 0:
        raise UserInputError("image and labels must be non-empty")
    if lab.min() < 0:
        raise UserInputError(f"labels must be >= 0, got minimum {lab.min()}")
    if num_labels is None:
        num_labels = int(lab.max()) + 1
    num_labels = check_int("num_labels", num_labels, minimum=1)
    if lab.max() >= num_labels:
        raise UserInputError(f"labels must be < num_labels = {num_labels}, got maximum {lab.max()}")
    counts = np.bincount(lab, minlength=num_labels)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise UserInputError(f"every class needs at least one pixel, got none for label(s) {empty.tolist()}")
    sums = np.stack([np.bincount(lab, weights=pixels[:, c], minlength=num_labels)
                     for c in range(pixels.shape[1])], axis=1)
    return sums / counts[:, None]


_CHUNK = 1 << 16  # pixels per block in nearest_prototype_labels (bounds memory)


def nearest_prototype_labels(image, prototypes) -> np.ndarray:
    """Pixel-wise rounding to the nearest prototype: ``argmin_j ||image[i] - prototypes[j]||_2``.

    Ties go to the lowest label index (the "local rounding" of paper 000, Fig. 1d).

    Parameters
    ----------
    image : array-like or torch.Tensor, shape (..., C)
    prototypes : array-like, shape (J, C)

    Returns
    -------
    ndarray, shape (...), int64
    """
    image = _to_numpy(image).astype(np.float64)
    prototypes = _to_numpy(prototypes).astype(np.float64)
    if prototypes.ndim != 2 or prototypes.shape[0] < 1:
        raise UserInputError(f"prototypes must have shape (J, C) with J >= 1, got shape {prototypes.shape}")
    if image.ndim < 1 or image.shape[-1] != prototypes.shape[1]:
        raise UserInputError(f"image must have shape (..., C) with C = {prototypes.shape[1]} "
                         f"(the prototypes' channels), got shape {image.shape}")
    for name, arr in (("image", image), ("prototypes", prototypes)):
        if not np.all(np.isfinite(arr)):
            raise UserInputError(f"{name} must be finite, got {int(np.sum(~np.isfinite(arr)))} NaN/inf entries")
    pixels = image.reshape(-1, image.shape[-1])
    out = np.empty(pixels.shape[0], dtype=np.int64)
    for start in range(0, pixels.shape[0], _CHUNK):
        block = pixels[start:start + _CHUNK]
        dist2 = ((block[:, None, :] - prototypes[None, :, :]) ** 2).sum(-1)
        out[start:start + _CHUNK] = dist2.argmin(axis=1)
    return out.reshape(image.shape[:-1])
