"""Label maps: percentage of wrong pixels and the confusion matrix."""

from __future__ import annotations

import numpy as np

from .._checks import UserInputError, UserTypeError, check_int

__all__ = ["confusion_matrix", "label_error", "match_labels"]


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
    _check_same_shape(pred, truth)
    for name, arr in (("pred", pred), ("truth", truth)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_labels):
            raise UserInputError(f"{name} labels must lie in 0..{num_labels - 1}, got range "
                             f"[{arr.min()}, {arr.max()}]")
    flat = truth * num_labels + pred
    return np.bincount(flat, minlength=num_labels * num_labels).reshape(num_labels, num_labels).astype(np.int64)


def match_labels(pred, truth) -> tuple[np.ndarray, dict]:
    """Renumber the labels of ``pred`` to agree best with ``truth`` (for unsupervised labelings such as
    k-means, whose cluster ids are arbitrary).

    The renumbering maximises the number of agreeing pixels, ``sum_p M[sigma(p), p]`` over one-to-one
    maps ``sigma`` from predicted to true labels, by the Hungarian method on the confusion matrix
    (``scipy.optimize.linear_sum_assignment``); predicted labels left without a partner (more clusters
    than classes) keep new ids above the true ones.

    Returns
    -------
    (relabelled pred, mapping {predicted id: matched id})
    """
    from scipy.optimize import linear_sum_assignment

    pred = _as_label_array("pred", pred)
    truth = _as_label_array("truth", truth)
    _check_same_shape(pred, truth)
    if pred.size == 0 or pred.min() < 0 or truth.min() < 0:
        raise UserInputError("pred and truth must be non-empty maps of labels >= 0")
    J = int(max(pred.max(), truth.max())) + 1
    M = confusion_matrix(pred, truth, J)                   # rows truth, columns pred
    rows, cols = linear_sum_assignment(-M)
    mapping = {int(p): int(t) for t, p in zip(rows, cols)}
    spare = iter(range(J, 2 * J))
    mapping.update({p: next(spare) for p in range(J) if p not in mapping})
    lut = np.array([mapping[p] for p in range(J)], dtype=np.int64)
    return lut[pred], mapping
