r"""Fixed multi-scale filter features for pixel labeling (the recipe of ilastik and of
``skimage.feature.multiscale_basic_features``), separable Gaussian-derivative kernels in torch, so they run on any
device and dtype in front of learned layers.  For an image channel :math:`I`, scale :math:`\sigma` and
:math:`L = G_\sigma * I` the channels are (scale-normalised derivatives, Lindeberg 1998; borders reflected; the
raw channels first)

.. math:: L,\qquad \sigma\|\nabla L\|,\qquad \sigma^2\lambda_{1,2}(\nabla^2 L),\quad
          \lambda_{1,2} = \tfrac{L_{xx}+L_{yy}}{2} \pm \sqrt{\big(\tfrac{L_{xx}-L_{yy}}{2}\big)^2 + L_{xy}^2}.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._checks import UserInputError, check_positive

__all__ = ["GaussianFeatureBank"]


def _kernels(sigma: float, dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """1-D Gaussian (normalised to sum 1) and its first and second derivatives, radius ``ceil(3 sigma)``:
    the kernels of ``scipy.ndimage.gaussian_filter(..., truncate=3)``."""
    r = max(1, int(3.0 * sigma + 0.5))
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    d1 = -x / sigma**2 * g
    d2 = (x**2 / sigma**4 - 1.0 / sigma**2) * g
    return g.to(dtype), d1.to(dtype), d2.to(dtype)


class GaussianFeatureBank(nn.Module):
    """Fixed multi-scale features ``(H, W, C) -> (H, W, C * (1 + 4 * len(sigmas)))`` at the scales ``sigmas``
    (pixels; the default is the random-forest baseline's)."""

    def __init__(self, sigmas: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0)):
        super().__init__()
        sigmas = [check_positive("sigmas entry", s) for s in sigmas]
        if not sigmas:
            raise UserInputError("sigmas must name at least one scale")
        self.sigmas = tuple(sigmas)

    def out_channels(self, channels: int) -> int:
        return channels * (1 + 4 * len(self.sigmas))

    @staticmethod
    def _conv(x: torch.Tensor, k: torch.Tensor, axis: int) -> torch.Tensor:
        """Correlate every channel of ``x`` (N, H, W) with the 1-D kernel ``k`` along ``axis`` (1: rows, 2: cols)."""
        r = k.numel() // 2
        pad = (0, 0, r, r) if axis == 1 else (r, r, 0, 0)
        # reflect padding needs r < size: fall back to replicate for tiny images
        mode = "replicate" if r >= x.shape[axis] else "reflect"
        xp = nn.functional.pad(x.unsqueeze(1), pad, mode=mode)
        w = k.reshape(1, 1, -1, 1) if axis == 1 else k.reshape(1, 1, 1, -1)
        return nn.functional.conv2d(xp, w)[:, 0]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or not image.is_floating_point():
            raise UserInputError(f"image must be a float tensor (H, W, C), got {getattr(image, 'shape', image)}")
        x = image.permute(2, 0, 1)                        # (C, H, W)
        out = [x]
        for s in self.sigmas:
            g, d1, d2 = _kernels(s, x.dtype)
            g, d1, d2 = g.to(x.device), d1.to(x.device), d2.to(x.device)
            gy = self._conv(x, g, 1)                       # smoothed along rows (y)
            gyx = self._conv(gy, g, 2)
            lx = self._conv(gy, d1, 2)
            lxx = self._conv(gy, d2, 2)
            dy = self._conv(x, d1, 1)
            ly = self._conv(dy, g, 2)
            lxy = self._conv(dy, d1, 2)
            lyy = self._conv(self._conv(x, d2, 1), g, 2)
            grad = s * torch.sqrt(lx**2 + ly**2 + torch.finfo(x.dtype).tiny)
            half_tr, half_diff = 0.5 * (lxx + lyy), 0.5 * (lxx - lyy)
            root = torch.sqrt(half_diff**2 + lxy**2 + torch.finfo(x.dtype).tiny)
            out += [gyx, grad, s**2 * (half_tr + root), s**2 * (half_tr - root)]
        return torch.cat(out, 0).permute(1, 2, 0).contiguous()
