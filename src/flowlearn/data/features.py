"""Raw window features of an image (paper 000, Sect. 4.1: "raw 3x3 window")."""

from __future__ import annotations

import numpy as np
import torch

from .._checks import UserInputError, UserTypeError, check_int, check_ndim

__all__ = ["window_features"]


def window_features(image, size: int = 3) -> torch.Tensor:
    """Stack the ``size x size`` window around every pixel into a feature vector.

    With ``r = size // 2`` and replicate padding (indices clamped to the image), for ``a, b = 0..size-1``,
    ``F[i, j, ((a * size) + b) * C + c] = image[clamp(i + a - r, 0, H-1), clamp(j + b - r, 0, W-1), c]``.
    ``image`` is a tensor or array ``(H, W, C)``, ``size`` the odd window side; the result, a tensor
    ``(H, W, size * size * C)`` in the dtype and device of the input, is differentiable in ``image``.
    """
    size = check_int("size", size, minimum=1, odd=True)
    if isinstance(image, np.ndarray):
        image = torch.as_tensor(np.ascontiguousarray(image))  # negative strides (np.flip) unsupported by torch
    elif not isinstance(image, torch.Tensor):
        raise UserTypeError(f"image must be a torch.Tensor or numpy array, got {type(image).__name__}")
    check_ndim("image (H, W, C)", image, (3,))
    height, width, channels = image.shape
    if height == 0 or width == 0 or channels == 0:
        raise UserInputError(f"image must be non-empty, got shape {tuple(image.shape)}")
    r = size // 2
    rows = torch.arange(-r, height + r, device=image.device).clamp(0, height - 1)
    cols = torch.arange(-r, width + r, device=image.device).clamp(0, width - 1)
    padded = image.index_select(0, rows).index_select(1, cols)
    windows = [padded[a:a + height, b:b + width, :] for a in range(size) for b in range(size)]
    return torch.stack(windows, dim=2).reshape(height, width, size * size * channels)
