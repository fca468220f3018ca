r"""Weight operators on 3-D voxel grids (e.g. EM stacks): 6- and 26-neighbour stencils.

Voxels are numbered row-major in :math:`(z, y, x)`, :math:`i = (z\,H + y)\,W + x`. The stencil is either

* ``neighbourhood=6``: the centre and its six face neighbours, :math:`N = 7` slots;
* ``neighbourhood=26``: the :math:`3\times3\times3` box, :math:`N = 27` slots.

In both cases the slots are the offsets :math:`(d_z, d_y, d_x)` in lexicographic (row-major) order: for 26
neighbours slot :math:`n = 9(d_z+1) + 3(d_y+1) + (d_x+1)` (centre 13); for 6 neighbours
``(-1,0,0), (0,-1,0), (0,0,-1), (0,0,0), (0,0,1), (0,1,0), (1,0,0)`` (centre 3).  Offsets that leave the
volume are masked, so border voxels average over the voxels that exist (the rows of :math:`\Omega` are
renormalised, as for :class:`~flowlearn.graphs.GridWeights`).

Default patches weigh each slot by a Gaussian of its *physical* offset (anisotropic voxel ``spacing``),
see :class:`GridWeights3D`.  Products cost :math:`O(I\,N)` per column (shifted slices of the
``(D, H, W, ...)`` view) and never build an :math:`I\times I` matrix.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from .._checks import (
    UserInputError,
    UserTypeError,
    check_int,
    check_memory,
    check_positive,
)
from .weights import WeightOperator

__all__ = ["GridWeights3D", "Neighbourhood3D", "gaussian_patch", "stencil_offsets"]

#: the stencils: number of neighbours (without the centre)
Neighbourhood3D = Literal[6, 26]
_NEIGHBOURHOODS = (6, 26)


def _check_neighbourhood(neighbourhood) -> int:
    if isinstance(neighbourhood, bool) or not isinstance(neighbourhood, (int, np.integer)):
        raise UserTypeError(f"neighbourhood must be the integer 6 (face neighbours) or 26 (3x3x3 box), "
                            f"got {neighbourhood!r}")
    if int(neighbourhood) not in _NEIGHBOURHOODS:
        raise UserInputError(f"neighbourhood must be 6 (face neighbours) or 26 (3x3x3 box), got {neighbourhood!r}")
    return int(neighbourhood)


def _check_spacing(spacing) -> tuple[float, float, float]:
    try:
        values = tuple(spacing)
    except TypeError:
        raise UserTypeError(f"spacing must be a sequence (sz, sy, sx) of 3 positive numbers, got {spacing!r}") from None
    if len(values) != 3:
        raise UserInputError(f"spacing must be a sequence (sz, sy, sx) of 3 positive numbers, got {spacing!r}")
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise UserTypeError(f"spacing must be a sequence (sz, sy, sx) of 3 positive numbers, "
                                f"got {spacing!r}") from None
        if not (math.isfinite(f) and f > 0):
            raise UserInputError(f"spacing must be a sequence (sz, sy, sx) of 3 finite numbers > 0, got {spacing!r}")
        out.append(f)
    return out[0], out[1], out[2]


def stencil_offsets(neighbourhood: Neighbourhood3D) -> list[tuple[int, int, int]]:
    """The slot offsets ``(dz, dy, dx)`` of a stencil, in lexicographic order (see the module docstring)."""
    neighbourhood = _check_neighbourhood(neighbourhood)
    box = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]
    if neighbourhood == 26:
        return box
    return [o for o in box if sum(abs(t) for t in o) <= 1]


def gaussian_patch(offsets, spacing=(1.0, 1.0, 1.0), sigma: float | None = None) -> list[float]:
    r"""Normalised Gaussian weights :math:`\exp(-|d|^2/(2\sigma^2))/Z` of the physical offsets
    :math:`d = (s_z d_z, s_y d_y, s_x d_x)`; ``sigma`` defaults to ``max(spacing)``."""
    sz, sy, sx = _check_spacing(spacing)
    sigma = max(sz, sy, sx) if sigma is None else check_positive("sigma", sigma)
    raw = [math.exp(-((sz * a) ** 2 + (sy * b) ** 2 + (sx * c) ** 2) / (2 * sigma**2)) for a, b, c in offsets]
    total = math.fsum(raw)
    return [r / total for r in raw]


class GridWeights3D(WeightOperator):
    r""":math:`\Omega` on a ``depth x height x width`` voxel grid with a 6- or 26-neighbour stencil.

    Parameters
    ----------
    depth, height, width : int
        Volume size; ``I = depth * height * width`` voxels, numbered row-major in ``(z, y, x)``.
    neighbourhood : {6, 26}
        6: centre + face neighbours (``N = 7`` slots); 26: the 3x3x3 box (``N = 27``).
        Slots are ordered lexicographically by offset ``(dz, dy, dx)`` (attribute ``offsets``;
        ``center`` is the centre's slot).
    patches : array ``(I, N)`` or ``(N,)``, optional
        Non-negative, normalised weight patches (a 1-D patch is shared by all voxels).
        Default: the Gaussian patch below, shared by all voxels.
    spacing : (sz, sy, sx), positive
        Physical voxel size along z, y, x (EM: ``sz`` several times ``sy = sx``). Used by the
        default patches only.
    sigma : float > 0, optional
        Width of the default Gaussian, in the units of ``spacing``; default ``max(spacing)``.
    dtype, device : optional
        Of the default patches (given patches keep their own unless set).

    Notes
    -----
    The default patch weighs slot :math:`n` with offset :math:`(d_z, d_y, d_x)` by its physical
    offset :math:`d_n = (s_z d_z,\; s_y d_y,\; s_x d_x)`:

    .. math:: p_n = \frac{\exp(-|d_n|^2/(2\sigma^2))}{\sum_{n'} \exp(-|d_{n'}|^2/(2\sigma^2))},

    and, as for every :class:`~flowlearn.graphs.WeightOperator`, the effective weights of voxel
    :math:`i` are renormalised over its valid (inside-the-volume) slots,
    :math:`\omega_{in} = m_{in}p_n/\sum_{n'} m_{in'}p_{n'}`.  So the ratio of two valid slots' weights is
    :math:`\exp(-(|d_n|^2-|d_{n'}|^2)/(2\sigma^2))`; e.g. with ``spacing=(4, 1, 1)``, ``sigma=4``, a z
    neighbour weighs :math:`e^{-(16-1)/32}` times an in-plane face neighbour.

    Examples
    --------
    >>> import torch
    >>> om = GridWeights3D(3, 4, 5, neighbourhood=26, spacing=(4.0, 1.0, 1.0))
    >>> om.num_nodes, om.patch_size
    (60, 27)
    >>> x = torch.ones(60, 2, dtype=om.dtype)
    >>> torch.allclose(om.apply(x), x)   # rows of Omega sum to one
    True
    """

    def __init__(self, depth: int, height: int, width: int, neighbourhood: Neighbourhood3D = 6, patches=None, *,
                 spacing=(1.0, 1.0, 1.0), sigma: float | None = None, dtype=None, device=None):
        self.depth = check_int("depth", depth, minimum=1)
        self.height = check_int("height", height, minimum=1)
        self.width = check_int("width", width, minimum=1)
        self.neighbourhood = _check_neighbourhood(neighbourhood)
        self.spacing = _check_spacing(spacing)
        self.sigma = max(self.spacing) if sigma is None else check_positive("sigma", sigma)
        self.num_nodes = self.depth * self.height * self.width
        self.offsets = stencil_offsets(self.neighbourhood)
        self.patch_size = len(self.offsets)
        self.center = self.offsets.index((0, 0, 0))
        check_memory(f"a {self.depth}x{self.height}x{self.width} volume with {self.neighbourhood}-neighbourhoods",
                     17.0 * self.num_nodes * self.patch_size, hint="use a smaller volume or neighbourhood=6")
        self.mask = self._build_mask(device)
        if patches is None:
            patches = torch.tensor(gaussian_patch(self.offsets, self.spacing, self.sigma),
                                   dtype=dtype or torch.get_default_dtype(), device=device)
        self._init_patches(patches, dtype, device)

    def _copy_structure(self) -> GridWeights3D:
        new = object.__new__(GridWeights3D)
        for name in ("depth", "height", "width", "neighbourhood", "spacing", "sigma", "num_nodes", "offsets",
                     "patch_size", "center"):
            setattr(new, name, getattr(self, name))
        return new

    def __repr__(self) -> str:
        return (f"GridWeights3D(depth={self.depth}, height={self.height}, width={self.width}, "
                f"neighbourhood={self.neighbourhood}, spacing={self.spacing})")

    # ------------------------------------------------------------ structure
    def _ranges(self, dz: int, dy: int, dx: int):
        """Destination box of voxels whose neighbour at (dz, dy, dx) exists, as three slices (or None)."""
        out = []
        for d, n in ((dz, self.depth), (dy, self.height), (dx, self.width)):
            lo, hi = max(0, -d), min(n, n - d)
            if lo >= hi:
                return None
            out.append((lo, hi))
        return out

    @staticmethod
    def _boxes(ranges, offset):
        """``(destination, source)`` index tuples of the shifted slice for one offset."""
        dst = tuple(slice(lo, hi) for lo, hi in ranges)
        src = tuple(slice(lo + d, hi + d) for (lo, hi), d in zip(ranges, offset))
        return dst, src

    def _build_mask(self, device) -> torch.Tensor:
        m = torch.zeros(self.depth, self.height, self.width, self.patch_size, dtype=torch.bool, device=device)
        for n, off in enumerate(self.offsets):
            ranges = self._ranges(*off)
            if ranges is not None:
                dst, _ = self._boxes(ranges, off)
                m[dst + (n,)] = True
        return m.reshape(self.num_nodes, self.patch_size)

    def neighbour_index(self) -> torch.Tensor:
        dev = self.device
        z = torch.arange(self.depth, device=dev).view(-1, 1, 1, 1)
        y = torch.arange(self.height, device=dev).view(1, -1, 1, 1)
        x = torch.arange(self.width, device=dev).view(1, 1, -1, 1)
        off = torch.tensor(self.offsets, device=dev)
        dz, dy, dx = (off[:, k].view(1, 1, 1, -1) for k in range(3))
        zz = (z + dz).clamp(0, self.depth - 1)
        yy = (y + dy).clamp(0, self.height - 1)
        xx = (x + dx).clamp(0, self.width - 1)
        return ((zz * self.height + yy) * self.width + xx).reshape(self.num_nodes, self.patch_size)

    # ------------------------------------------------------------- products
    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.depth, self.height, self.width, -1)

    def _shifted_product(self, w, x, transpose: bool):
        """Omega x (``transpose=False``: voxel i gathers w_in x_k(i,n)) or Omega^T x (voxel k(i,n) receives
        w_in x_i), one shifted box per stencil slot."""
        xg = self._grid(x)
        wg = w.reshape(self.depth, self.height, self.width, self.patch_size, 1)
        out = torch.zeros_like(xg, dtype=torch.result_type(xg, w))
        for n, off in enumerate(self.offsets):
            ranges = self._ranges(*off)
            if ranges is None:
                continue
            dst, src = self._boxes(ranges, off)
            if transpose:
                out[src] += wg[dst + (n,)] * xg[dst]
            else:
                out[dst] += wg[dst + (n,)] * xg[src]
        return out.reshape(x.shape)

    def _apply(self, w, x):
        return self._shifted_product(w, x, transpose=False)

    def _apply_transpose(self, w, x):
        return self._shifted_product(w, x, transpose=True)

    def _patch_products(self, u, x):
        ug, xg = self._grid(u), self._grid(x)
        g = torch.zeros(self.depth, self.height, self.width, self.patch_size, dtype=torch.result_type(ug, xg),
                        device=ug.device)
        for n, off in enumerate(self.offsets):
            ranges = self._ranges(*off)
            if ranges is None:
                continue
            dst, src = self._boxes(ranges, off)
            g[dst + (n,)] = (ug[dst] * xg[src]).sum(-1)
        return g.reshape(self.num_nodes, self.patch_size)
