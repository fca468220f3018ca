"""Loader for the facades photographs with hand-made ground truth (9 classes).

The file ``facades.npz`` (see ``shared/data/README.md``; MIT licence, from the public
repository ``IPA-HD/sigmamodels``) holds ``f``: float (N, H, W, 3) RGB in [0, 1] and ``l``:
int (N, H, W) labels.  The package never needs the file at run time: it is only read when
:func:`load_facades` is called with its path.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import UserFileNotFoundError, UserInputError

__all__ = ["FacadesData", "load_facades"]


@dataclass(frozen=True)
class FacadesData:
    """Facade photographs with ground-truth labelings.

    Attributes
    ----------
    images : ndarray, shape (N, H, W, 3), float64
        RGB images (values as stored, nominally in [0, 1]).
    labels : ndarray, shape (N, H, W), int64
        Ground-truth labels in ``0..num_labels-1``.
    num_labels : int
        ``max(labels) + 1`` (9 for the shipped file).
    path : str
        File the data came from.
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

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    FacadesData

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Naming the path, if the file is not an npz archive, a key is missing, ``f`` is not a
        finite real (N, H, W, 3) array, ``l`` is not an integer (N, H, W) array matching it,
        or a label is negative.
    """
    path = Path(path)
    where = repr(str(path))
    if not path.exists():
        raise UserFileNotFoundError(f"facades file {where} does not exist")
    if path.is_dir() or not zipfile.is_zipfile(path):
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
