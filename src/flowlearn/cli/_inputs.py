"""Validated loading of the CLI's auxiliary input files (label maps; saved models go through :func:`flowlearn.engine.load_weights`).

Each loader raises :class:`FileNotFoundError` or :class:`ValueError` naming the option and the
path, so :mod:`flowlearn.cli.main` reports one clear line before any output is written.
"""

from __future__ import annotations

import numpy as np

from .._checks import UserInputError
from ..io import check_npy, existing_file

__all__ = ["load_label_map"]


def load_label_map(path, shape, *, option: str = "--labels") -> np.ndarray:
    """Read a ground-truth label map: an integer ``.npy`` array of shape ``shape`` = (H, W), values >= 0.

    Returns
    -------
    ndarray, shape (H, W), int64

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a ``.npy`` array, is not integer, has another shape or negative values.
    """
    path = existing_file(path, option, "an .npy label map")
    where = f"{option} file {str(path)!r}"
    check_npy(path, where, extra_per_element=8.0, hint=f"check the {option} file")   # before np.load allocates
    try:
        labels = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserInputError(f"cannot read {where} as a .npy array: {exc}") from exc
    if labels.shape != tuple(shape):
        raise UserInputError(f"{option} must have the image's shape {tuple(shape)}, got shape {labels.shape} "
                         f"in {str(path)!r}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise UserInputError(f"{where} must hold an integer label map, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise UserInputError(f"{where} must hold labels >= 0, got minimum {labels.min()}")
    return labels.astype(np.int64)
