r"""Weight operators on image grids: a per-pixel weighted stencil.

Pixels are numbered row-major, :math:`i = r\,W + c`. The neighbourhood of size
:math:`k\times k` (odd :math:`k`) holds the pixels at offsets
:math:`(d_r, d_c)\in\{-s..s\}^2`, :math:`s=(k-1)/2`, in row-major order (slot
:math:`n = (d_r+s)k + (d_c+s)`; the centre is slot :math:`(k^2-1)/2`). Offsets that
leave the image are masked, so border pixels average over the pixels that exist.

Products cost :math:`O(I\,k^2)` per column and never build an :math:`I\times I` matrix.
"""

from __future__ import annotations

import torch

from .._checks import UserInputError, check_int, check_memory
from .weights import WeightOperator

__all__ = ["GridWeights"]


class GridWeights(WeightOperator):
    """:math:`\\Omega` on an ``height x width`` grid with ``size x size`` neighbourhoods.

    Parameters
    ----------
    height, width : int
        Image size; ``I = height * width`` nodes.
    size : int, odd
        Neighbourhood size (3 for 3x3, 5 for 5x5, ...).
    patches : array ``(I, size**2)`` or ``(size**2,)``, optional
        Non-negative, normalised weight patches (a 1-D patch is shared by all
        pixels). Default: uniform.
    dtype, device : optional
        Of the default uniform patches (given patches keep their own unless set).

    Examples
    --------
    >>> import torch
    >>> om = GridWeights(4, 5, size=3)
    >>> x = torch.ones(20, 2)
    >>> torch.allclose(om.apply(x), x)   # rows of Omega sum to one
    True
    """

    def __init__(self, height: int, width: int, size: int = 3, patches=None, *, dtype=None, device=None):
        self.height = check_int("height", height, minimum=1)
        self.width = check_int("width", width, minimum=1)
        self.size = check_int("size", size, minimum=1, odd=True)
        largest = 2 * max(self.height, self.width) - 1
        if self.size > largest:
            raise UserInputError(f"size (the neighbourhood) must be at most 2 * max(height, width) - 1 = {largest} "
                                 f"for a {self.height}x{self.width} grid, got {self.size}")
        self.num_nodes = self.height * self.width
        # mask (bool), patches and neighbour indices (8 bytes each) per node and offset
        check_memory(f"a {self.height}x{self.width} grid with {self.size}x{self.size} neighbourhoods",
                     17.0 * self.num_nodes * self.size**2, hint="use a smaller neighbourhood or image")
        self.patch_size = self.size**2
        s = self.size // 2
        self.offsets = [(dr, dc) for dr in range(-s, s + 1) for dc in range(-s, s + 1)]
        self.mask = self._build_mask(device)
        self._init_patches(patches, dtype, device)

    def _copy_structure(self) -> GridWeights:
        new = object.__new__(GridWeights)
        new.height, new.width, new.size = self.height, self.width, self.size
        new.num_nodes, new.patch_size, new.offsets = self.num_nodes, self.patch_size, self.offsets
        return new

    def __repr__(self) -> str:
        return f"GridWeights(height={self.height}, width={self.width}, size={self.size})"

    # ------------------------------------------------------------ structure
    def _ranges(self, dr: int, dc: int):
        """Destination box ``[r0, r1) x [c0, c1)`` of pixels whose neighbour at (dr, dc) exists."""
        H, W = self.height, self.width
        return max(0, -dr), min(H, H - dr), max(0, -dc), min(W, W - dc)

    def _build_mask(self, device) -> torch.Tensor:
        m = torch.zeros(self.height, self.width, self.patch_size, dtype=torch.bool, device=device)
        for n, (dr, dc) in enumerate(self.offsets):
            r0, r1, c0, c1 = self._ranges(dr, dc)
            if r0 < r1 and c0 < c1:
                m[r0:r1, c0:c1, n] = True
        return m.reshape(self.num_nodes, self.patch_size)

    def neighbour_index(self) -> torch.Tensor:
        rows = torch.arange(self.height, device=self.device).view(-1, 1, 1)
        cols = torch.arange(self.width, device=self.device).view(1, -1, 1)
        dr = torch.tensor([o[0] for o in self.offsets], device=self.device).view(1, 1, -1)
        dc = torch.tensor([o[1] for o in self.offsets], device=self.device).view(1, 1, -1)
        r = (rows + dr).clamp(0, self.height - 1)
        c = (cols + dc).clamp(0, self.width - 1)
        return (r * self.width + c).reshape(self.num_nodes, self.patch_size)

    # ------------------------------------------------------------- products
    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.height, self.width, -1)

    def _apply(self, w, x):
        xg = self._grid(x)
        wg = w.reshape(self.height, self.width, self.patch_size, 1)
        out = torch.zeros_like(xg, dtype=torch.result_type(xg, w))
        for n, (dr, dc) in enumerate(self.offsets):
            r0, r1, c0, c1 = self._ranges(dr, dc)
            if r0 >= r1 or c0 >= c1:
                continue
            out[r0:r1, c0:c1] += wg[r0:r1, c0:c1, n] * xg[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
        return out.reshape(x.shape)

    def _apply_transpose(self, w, x):
        xg = self._grid(x)
        wg = w.reshape(self.height, self.width, self.patch_size, 1)
        out = torch.zeros_like(xg, dtype=torch.result_type(xg, w))
        for n, (dr, dc) in enumerate(self.offsets):
            r0, r1, c0, c1 = self._ranges(dr, dc)
            if r0 >= r1 or c0 >= c1:
                continue
            out[r0 + dr:r1 + dr, c0 + dc:c1 + dc] += wg[r0:r1, c0:c1, n] * xg[r0:r1, c0:c1]
        return out.reshape(x.shape)

    def _patch_products(self, u, x):
        ug, xg = self._grid(u), self._grid(x)
        g = torch.zeros(self.height, self.width, self.patch_size, dtype=torch.result_type(ug, xg),
                        device=ug.device)
        for n, (dr, dc) in enumerate(self.offsets):
            r0, r1, c0, c1 = self._ranges(dr, dc)
            if r0 >= r1 or c0 >= c1:
                continue
            g[r0:r1, c0:c1, n] = (ug[r0:r1, c0:c1] * xg[r0 + dr:r1 + dr, c0 + dc:c1 + dc]).sum(-1)
        return g.reshape(self.num_nodes, self.patch_size)
