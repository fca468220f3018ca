"""Pixel-wise rounding of an image to its nearest label prototype (the baseline of paper 000, Fig. 1d)."""

from __future__ import annotations

import numpy as np

from .._checks import UserInputError

__all__ = ["nearest_prototype_labels"]

_CHUNK = 1 << 16  # pixels per block in nearest_prototype_labels (bounds memory)


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
