"""Label maps: error rate, confusion matrix and pixel-wise nearest-prototype rounding."""

from __future__ import annotations

import numpy as np

from .._checks import UserInputError, UserTypeError, check_int

__all__ = ["confusion_matrix", "label_error", "nearest_prototype_labels"]

_CHUNK = 1 << 16  # pixels per block in nearest_prototype_labels (bounds memory)


def _as_label_array(name: str, labels) -> np.ndarray:
    """Convert a label map (numpy, torch or list) to an int64 array; reject non-integer values."""
    if hasattr(labels, "detach"):  # torch tensor
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise UserTypeError(f"{name} must be an integer label array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise UserInputError(f"{name} must hold integer labels, got non-integer float values")
    return arr.astype(np.int64, copy=False)


def _check_same_shape(pred: np.ndarray, truth: np.ndarray) -> None:
    if pred.shape != truth.shape:
        raise UserInputError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")


def label_error(pred, truth) -> float:
    """Percentage of pixels whose label differs: ``100 * mean(pred != truth)``.

    Parameters
    ----------
    pred, truth : array-like of ints, same shape (e.g. (H, W))
        numpy arrays or torch tensors.

    Returns
    -------
    float
        Label error in percent, in ``[0, 100]``.

    Raises
    ------
    ValueError
        If the shapes differ or the arrays are empty.
    """
    pred = _as_label_array("pred", pred)
    truth = _as_label_array("truth", truth)
    _check_same_shape(pred, truth)
    if pred.size == 0:
        raise UserInputError("pred and truth must be non-empty, got shape " + str(pred.shape))
    return float(100.0 * np.count_nonzero(pred != truth) / pred.size)


def confusion_matrix(pred, truth, num_labels: int) -> np.ndarray:
    """Confusion matrix ``M[t, p]`` = number of pixels with true label ``t`` predicted as ``p``.

    Rows are the ground truth, columns the prediction (scikit-learn's convention), so
    ``label_error = 100 * (1 - trace(M) / M.sum())``.

    Parameters
    ----------
    pred, truth : array-like of ints, same shape
    num_labels : int
        ``J``; all labels must lie in ``0..J-1``.

    Returns
    -------
    ndarray, shape (J, J), int64
    """
    num_labels = check_int("num_labels", num_labels, minimum=1)
    pred = _as_label_array("pred", pred).ravel()
    truth = _as_label_array("truth", truth).ravel()
    if pred.shape != truth.shape:
        raise UserInputError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")
    for name, arr in (("pred", pred), ("truth", truth)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_labels):
            raise UserInputError(f"{name} labels must lie in 0..{num_labels - 1}, got range "
                             f"[{arr.min()}, {arr.max()}]")
    flat = truth * num_labels + pred
    return np.bincount(flat, minlength=num_labels * num_labels).reshape(num_labels, num_labels).astype(np.int64)


def nearest_prototype_labels(image, prototypes) -> np.ndarray:
    """Pixel-wise rounding to the nearest prototype: ``argmin_j ||image[i] - prototypes[j]||_2``.

    Ties go to the lowest label index.  This is the baseline "local rounding" of paper 000
    (Fig. 1d) and the prediction of the assignment flow without any regularization.

    Parameters
    ----------
    image : array-like, shape (..., C)
        e.g. (H, W, C); numpy or torch.
    prototypes : array-like, shape (J, C)

    Returns
    -------
    ndarray, shape (...), int64
    """
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    if hasattr(prototypes, "detach"):
        prototypes = prototypes.detach().cpu().numpy()
    image = np.asarray(image, dtype=np.float64)
    prototypes = np.asarray(prototypes, dtype=np.float64)
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
