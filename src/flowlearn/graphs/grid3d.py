r"""Weight operators on 3-D voxel grids (e.g. EM stacks): 6- and 26-neighbour stencils.

Voxels are numbered row-major in :math:`(z, y, x)`, :math:`i = (z\,H + y)\,W + x`.  ``neighbourhood=6``: the
centre and its six face neighbours (:math:`N = 7` slots); ``neighbourhood=26``: the :math:`3\times3\times3` box
(:math:`N = 27`).  Slots are the offsets :math:`(d_z, d_y, d_x)` in lexicographic order: for 26 neighbours
:math:`n = 9(d_z+1) + 3(d_y+1) + (d_x+1)` (centre 13); for 6 neighbours
``(-1,0,0), (0,-1,0), (0,0,-1), (0,0,0), (0,0,1), (0,1,0), (1,0,0)`` (centre 3).  Offsets that leave the
volume are masked and the rows renormalised, as for :class:`~flowlearn.graphs.GridWeights`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from .._checks import UserInputError, UserTypeError, check_int, check_memory, check_positive
from .grid import _Stencil

__all__ = ["GridWeights3D", "Neighbourhood3D", "gaussian_patch", "stencil_offsets"]

#: the stencils: number of neighbours (without the centre)
Neighbourhood3D = Literal[6, 26]


def _check_neighbourhood(neighbourhood) -> int:
    if isinstance(neighbourhood, bool) or not isinstance(neighbourhood, (int, np.integer)):
        raise UserTypeError(f"neighbourhood must be the integer 6 (face neighbours) or 26 (3x3x3 box), "
                            f"got {neighbourhood!r}")
    if int(neighbourhood) not in (6, 26):
        raise UserInputError(f"neighbourhood must be 6 (face neighbours) or 26 (3x3x3 box), got {neighbourhood!r}")
    return int(neighbourhood)


def _check_spacing(spacing) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError):
        raise UserTypeError(f"spacing must be a sequence (sz, sy, sx) of 3 positive numbers, got {spacing!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise UserInputError(f"spacing must be a sequence (sz, sy, sx) of 3 finite numbers > 0, got {spacing!r}")
    return values


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


class GridWeights3D(_Stencil):
    r""":math:`\Omega` on a ``depth x height x width`` voxel grid with a 6- or 26-neighbour stencil.

    Parameters
    ----------
    depth, height, width : int
        Volume size; ``I = depth * height * width`` voxels, numbered row-major in ``(z, y, x)``.
    neighbourhood : {6, 26}
        6: centre + face neighbours (``N = 7`` slots); 26: the 3x3x3 box (``N = 27``); attribute ``offsets``
        lists the slots, ``center`` is the centre's slot.
    patches : array ``(I, N)`` or ``(N,)``, optional
        Non-negative, normalised weight patches (a 1-D patch is shared by all voxels).  Default: the
        Gaussian patch of the Notes.
    spacing, sigma : (sz, sy, sx) positive, float > 0, optional
        Physical voxel size along z, y, x and the width of the Gaussian (default ``max(spacing)``).
    dtype, device : optional
        Of the default patches (given patches keep their own unless set).

    Notes
    -----
    The default patch weighs slot :math:`n` by its physical offset :math:`d_n = (s_z d_z, s_y d_y, s_x d_x)`,
    :math:`p_n \propto \exp(-|d_n|^2/(2\sigma^2))`, renormalised over the valid slots of each voxel; e.g.
    with ``spacing=(4, 1, 1)``, ``sigma=4``, a z neighbour weighs :math:`e^{-(16-1)/32}` times an in-plane
    face neighbour.
    """

    def __init__(self, depth: int, height: int, width: int, neighbourhood: Neighbourhood3D = 6, patches=None, *,
                 spacing=(1.0, 1.0, 1.0), sigma: float | None = None, dtype=None, device=None):
        self.depth = check_int("depth", depth, minimum=1)
        self.height = check_int("height", height, minimum=1)
        self.width = check_int("width", width, minimum=1)
        self.neighbourhood = _check_neighbourhood(neighbourhood)
        self.spacing = _check_spacing(spacing)
        self.sigma = max(self.spacing) if sigma is None else check_positive("sigma", sigma)
        self.dims = (self.depth, self.height, self.width)
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

    def __repr__(self) -> str:
        return (f"GridWeights3D(depth={self.depth}, height={self.height}, width={self.width}, "
                f"neighbourhood={self.neighbourhood}, spacing={self.spacing})")
