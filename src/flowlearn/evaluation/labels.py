"""Label maps: percentage of wrong pixels and the confusion matrix."""

from __future__ import annotations

import numpy as np

from .._checks import UserInputError, UserTypeError, check_int

__all__ = ["confusion_matrix", "label_error", "match_labels"]


def _as_label_array(name: str, labels) -> np.ndarray:
    """A label map (numpy, torch or list) as an int64 array; non-integer values are refused."""
    arr = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise UserTypeError(f"{name} must be an integer label array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise UserInputError(f"{name} must hold integer labels, got non-integer float values")
    return arr.astype(np.int64, copy=False)


def _pair(pred, truth, ravel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = _as_label_array("pred", pred), _as_label_array("truth", truth)
    if ravel:
        pred, truth = pred.ravel(), truth.ravel()
    if pred.shape != truth.shape:
        raise UserInputError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")
    return pred, truth


def label_error(pred, truth) -> float:
    """Percentage of pixels whose label differs, ``100 * mean(pred != truth)``, of two non-empty integer
    label maps (numpy arrays or torch tensors) of one shape."""
    pred, truth = _pair(pred, truth)
    if pred.size == 0:
        raise UserInputError("pred and truth must be non-empty, got shape " + str(pred.shape))
    return float(100.0 * np.count_nonzero(pred != truth) / pred.size)


def confusion_matrix(pred, truth, num_labels: int) -> np.ndarray:
    """Confusion matrix ``M[t, p]`` = number of pixels with true label ``t`` predicted as ``p``.

    Rows are the ground truth, columns the prediction (scikit-learn's convention), so
    ``label_error = 100 * (1 - trace(M) / M.sum())``.  Returns an int64 array ``(J, J)``, ``J = num_labels``;
    the labels of ``pred`` and ``truth`` (integer arrays of one shape) must lie in ``0..J-1``.
    """
    num_labels = check_int("num_labels", num_labels, minimum=1)
    pred, truth = _pair(pred, truth, ravel=True)
    for name, arr in (("pred", pred), ("truth", truth)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_labels):
            raise UserInputError(f"{name} labels must lie in 0..{num_labels - 1}, got range [{arr.min()}, {arr.max()}]")
    flat = truth * num_labels + pred
    return np.bincount(flat, minlength=num_labels * num_labels).reshape(num_labels, num_labels).astype(np.int64)


def match_labels(pred, truth) -> tuple[np.ndarray, dict]:
    """Renumber the labels of ``pred`` to agree best with ``truth`` (for unsupervised labelings such as
    k-means, whose cluster ids are arbitrary).

    The renumbering maximises the number of agreeing pixels, ``sum_p M[sigma(p), p]`` over one-to-one
    maps ``sigma`` from predicted to true labels (Hungarian method on the confusion matrix); predicted
    labels left without a partner keep new ids above the true ones.  Returns the relabelled ``pred`` and
    the mapping ``{predicted id: matched id}``.
    """
    from scipy.optimize import linear_sum_assignment

    pred, truth = _pair(pred, truth)
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
