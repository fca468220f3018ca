r"""A 3-D linearized assignment flow over a stack of per-slice probabilities ``(Z, H, W, J)`` (e.g. an EM stack
labelled slice by slice by a 2-D :class:`~flowlearn.learning.labeler.LabelerModel`), blockwise with ``dask.array``:
blocks of ``block`` slices (and, with ``tile``, ``tile x tile`` pixels) run the flow with ``overlap`` slices
(``tile_overlap`` pixels) of their neighbours as context, which is cut off again, so memory stays at a few blocks.

Reach: the forward Krylov solve of dimension ``m`` is a polynomial of degree ``m - 1`` in the operator, so a
voxel's result depends on voxels at most ``m`` steps away; with ``overlap >= m`` (and ``tile_overlap >= m``) a
block sees everything the whole-stack run sees, up to the convergence of either Krylov solve.  A small
``z_weight`` shortens the z reach in effect: a voxel ``k`` slices away weighs like ``(T z_weight)^k / k!``.
Requires the optional ``dask`` package (``pip install "dask[array]"``).
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import UserInputError, UserTypeError, check_choice, check_int, check_positive
from ..graphs.grid3d import _check_neighbourhood, stencil_offsets
from ..linearized import LinearizedAssignmentLayer, LowRank
from .tiling import _dask, compute_or_store, map_with_context

_STARTS = ("barycenter", "input")

__all__ = ["flow_block", "stack_flow", "stack_flow_lazy", "stack_patch", "z_weight_from_spacing"]


def z_weight_from_spacing(z_spacing: float, xy_spacing: float) -> float:
    r"""The z-weight :math:`(s_{xy}/s_z)^2` of an anisotropic grid: the ratio of the weights of a z and an
    in-plane neighbour in the discrete Laplacian with spacings :math:`s_z, s_{xy}` (ISBI 2012, 50 nm and 4 nm:
    0.0064)."""
    return (check_positive("xy_spacing", xy_spacing) / check_positive("z_spacing", z_spacing)) ** 2


def stack_patch(z_weight: float, neighbourhood: int = 6) -> torch.Tensor:
    r"""The shared weight patch ``(K,)`` float64 of :class:`~flowlearn.graphs.GridWeights3D`'s slots: 1 for every
    in-plane slot (:math:`d_z = 0`), ``z_weight`` for the others, normalised (:math:`(w, 1, 1, 1, 1, 1, w)/(5 + 2w)`
    for 6 neighbours)."""
    w = check_positive("z_weight", z_weight, strict=False)
    raw = torch.tensor([w if dz else 1.0 for dz, _, _ in stencil_offsets(_check_neighbourhood(neighbourhood))],
                       dtype=torch.float64)
    return raw / raw.sum()


def flow_block(prob, *, T: float = 0.5, rho: float = 1.0, z_weight: float = 0.0064, eps: float = 1e-6, m: int = 10,
               neighbourhood: int = 6, start: str = "input") -> np.ndarray:
    r"""The flow's assignment :math:`W_T` ``(Z, H, W, J)`` of one block ``prob`` ``(Z, H, W, J)`` held in memory
    (:func:`stack_flow` calls it per block), as a NumPy array of ``prob``'s dtype."""
    p = torch.as_tensor(np.asarray(prob))
    if p.dtype not in (torch.float32, torch.float64):
        raise UserTypeError(f"prob must be float32 or float64, got {p.dtype}")
    if p.ndim != 4 or p.shape[-1] < 2:
        raise UserInputError(f"prob must have shape (Z, H, W, J) with J >= 2, got {tuple(p.shape)}")
    if p.numel() and not bool(torch.isfinite(p).all()):
        raise UserInputError("prob must be finite, got NaN/inf entries")
    if p.numel() and (float(p.min()) < 0 or float(p.max()) > 1):
        raise UserInputError(f"prob must lie in [0, 1], got values in [{float(p.min()):.4g}, {float(p.max()):.4g}]")
    check_choice("start", start, _STARTS)
    if 0 in p.shape:
        return p.numpy().copy()
    Z, H, W = p.shape[:3]
    patch = stack_patch(z_weight, neighbourhood).to(p.dtype)
    layer = LinearizedAssignmentLayer(rho=rho, T=T, method=LowRank(m=check_int("m", m, minimum=1)),
                                      neighbourhood=neighbourhood)
    with torch.no_grad():
        D = -p.clamp_min(eps).log().movedim(-1, 0).unsqueeze(0)               # (1, J, Z, H, W)
        patches = patch.view(1, -1, 1, 1, 1).expand(1, patch.numel(), Z, H, W)
        log_w = None if start == "barycenter" else torch.log_softmax(-D, dim=1)   # log of p renormalised
        out = layer(patches, D, log_w)[0].movedim(0, -1).exp()
    return out.contiguous().numpy()


def stack_flow_lazy(prob, *, T: float = 0.5, rho: float = 1.0, z_weight: float = 0.0064, block: int = 8,
                    overlap: int = 4, tile: int | None = None, tile_overlap: int = 10, eps: float = 1e-6,
                    m: int = 10, neighbourhood: int = 6, start: str = "input"):
    r"""The lazy dask array of :func:`stack_flow` (same arguments, no ``out``/``scheduler``), computed block by
    block when computed or stored."""
    da = _dask()
    T, rho = check_positive("T", T), check_positive("rho", rho)
    z_weight = check_positive("z_weight", z_weight, strict=False)
    block = check_int("block", block, minimum=1)
    overlap = check_int("overlap", overlap, minimum=0)
    tile = None if tile in (None, 0) else check_int("tile", tile, minimum=8)
    tile_overlap = check_int("tile_overlap", tile_overlap, minimum=0)
    m = check_int("m", m, minimum=1)
    neighbourhood = _check_neighbourhood(neighbourhood)
    check_choice("start", start, _STARTS)
    eps = check_positive("eps", eps)
    if eps >= 0.5:
        raise UserInputError(f"eps must be in (0, 0.5), got {eps!r}")
    if overlap > block:
        raise UserInputError(f"overlap must be at most block = {block}, got {overlap}")
    if tile is not None and tile_overlap > tile:
        raise UserInputError(f"tile_overlap must be at most tile = {tile}, got {tile_overlap}")
    if not isinstance(prob, da.Array) and not (hasattr(prob, "shape") and hasattr(prob, "dtype")):
        raise UserTypeError(f"prob must be an array (Z, H, W, J), got {type(prob).__name__}")
    if len(prob.shape) != 4 or prob.shape[-1] < 2 or 0 in prob.shape:
        raise UserInputError(f"prob must be a non-empty array (Z, H, W, J) with J >= 2 labels, got shape "
                             f"{tuple(prob.shape)}")
    if np.dtype(prob.dtype) not in (np.float32, np.float64):
        raise UserTypeError(f"prob must be float32 or float64, got {np.dtype(prob.dtype)}")
    xy = -1 if tile is None else tile
    x = prob if isinstance(prob, da.Array) else da.from_array(prob, chunks=(block, xy, xy, -1))
    x = x.rechunk((block, xy, xy, -1))

    def run(b: np.ndarray) -> np.ndarray:
        return flow_block(b, T=T, rho=rho, z_weight=z_weight, eps=eps, m=m, neighbourhood=neighbourhood,
                          start=start)

    return map_with_context(x, (overlap, tile_overlap, tile_overlap), run, channels=x.shape[-1], dtype=x.dtype)


def stack_flow(prob, *, T: float = 0.5, rho: float = 1.0, z_weight: float = 0.0064, block: int = 8,
               overlap: int = 4, tile: int | None = None, tile_overlap: int = 10, eps: float = 1e-6, m: int = 10,
               neighbourhood: int = 6, start: str = "input", out=None,
               scheduler: str | None = "synchronous") -> np.ndarray:
    r"""A 3-D linearized assignment flow over a stack of per-slice class probabilities, blockwise along z.

    Parameters
    ----------
    prob : array-like or dask array ``(Z, H, W, J)``, float32 or float64, values in [0, 1]
        Probabilities per voxel (channels last); a NumPy array, memory map or zarr array is read block by block.
    T, rho : float > 0
    z_weight : float >= 0
        Weight of a z-neighbour slot relative to an in-plane one (:func:`stack_patch`); 0 decouples the slices
        (the 2-D flow with the 4-neighbourhood on each slice), :func:`z_weight_from_spacing` gives the
        Laplacian's :math:`(s_{xy}/s_z)^2` (0.0064 for ISBI 2012).
    block, overlap : int
        Slices per block and slices of context on each side (at most ``block``; ``>= m`` covers the reach).
    tile, tile_overlap : int, optional
        Also tile in xy: ``tile x tile`` pixels with ``tile_overlap`` pixels of context (default: whole slices).
    eps : float in (0, 0.5)
        Clamp of the probabilities before the logarithm.
    m, neighbourhood : int
        Krylov dimension of the forward solve; 3-D stencil (6 or 26) of :class:`~flowlearn.graphs.GridWeights3D`.
    start : {"input", "barycenter"}
        The starting point :math:`W_0`: the input (renormalised), as a further layer of
        :class:`~flowlearn.learning.deep.DeepLinearizedFlow` would, or the barycenter :math:`1/J`.
    out, scheduler
        An array ``(Z, H, W, J)`` stored into block by block (e.g. ``numpy.lib.format.open_memmap``) and
        returned; the dask scheduler (default one block at a time; ``None``: the active one).

    Returns
    -------
    numpy.ndarray ``(Z, H, W, J)`` of ``prob``'s dtype: the assignment :math:`W_T`.

    Notes
    -----
    With :math:`D_{ij} = -\log\max(p_{ij}, \varepsilon)` and the patch :math:`\omega` of :func:`stack_patch`
    (renormalised at the volume's borders), the linearized flow (paper 000, (2.22)--(2.24))

    .. math:: S = \mathrm{softmax}(\Omega(\log W_0 - D/\rho)),\quad B = \tfrac1J\Pi_0 S,\quad
              AU = R_S(\Omega U),\quad V_T = T\varphi(TA)B,\quad W_T = \mathrm{softmax}(\log W_0 + J\,V_T),

    :math:`\log W_0 = -\log J` (``start="barycenter"``) or :math:`\log\mathrm{softmax}(-D)` (``start="input"``),
    one forward call of :class:`~flowlearn.linearized.LinearizedAssignmentLayer` per block, in the input's dtype.
    """
    y = stack_flow_lazy(prob, T=T, rho=rho, z_weight=z_weight, block=block, overlap=overlap, tile=tile,
                        tile_overlap=tile_overlap, eps=eps, m=m, neighbourhood=neighbourhood, start=start)
    return compute_or_store(y, out, scheduler)
