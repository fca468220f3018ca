r"""The linearized assignment flow as a PyTorch layer on channels-first batches, 2-D or 3-D by the input's rank.

For distances :math:`D` ``(N, J, *spatial)`` and weight patches ``(N, K, *spatial)`` the layer computes, per sample,
:math:`V_T = T\varphi(TA)B` and :math:`\log W_T = \mathrm{log\,softmax}(\log W + JV_T)` (paper 000, (2.22)--(2.24),
(1.6)) with :func:`~flowlearn.linearized.linearized_flow`.  2-D inputs use the ``size x size`` stencil of
:class:`~flowlearn.graphs.GridWeights` (``K = size**2``), 3-D inputs the 6- or 26-neighbourhood of
:class:`~flowlearn.graphs.GridWeights3D` (``K = 7`` or ``27``); the stencil is built once per shape and device
and cached.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .._checks import UserInputError, UserTypeError, check_int, check_positive
from ..graphs import GridWeights, GridWeights3D, WeightOperator
from ..graphs.grid3d import _check_neighbourhood
from .function import linearized_flow
from .methods import LowRank, check_method

__all__ = ["LinearizedAssignmentLayer"]

_CACHED_SHAPES = 8
#: The last ``_CACHED_SHAPES`` stencils (with their CSR patterns) used by any layer: ``(spatial, device, stencil)``.
_STRUCTURES: OrderedDict = OrderedDict()


class LinearizedAssignmentLayer(nn.Module):
    r"""``layer(patches (N, K, *spatial), distances (N, J, *spatial), log_assignment=None) -> log W_T``.

    Parameters
    ----------
    rho : float > 0
        Scale of the data term (:math:`S = \mathrm{softmax}(\Omega(\log W - D/\rho))`).  To feed logits
        :math:`\ell` instead of distances, pass ``distances = -logits`` with ``rho = 1``.
    T : float > 0
        Integration time.
    method : LowRank, Exact, DenseAutograd, AutodiffEuler or AutodiffExpint
        How :math:`V_T` and its gradient are computed.
    size, neighbourhood : int
        Side of the 2-D stencil (``K = size**2``, odd); 3-D stencil, 6 or 26 (``K = 7`` or ``27``).

    Attributes
    ----------
    stats : dict
        Per-sample lists of the last call: ``krylov_dim``, ``status``, and after a backward ``adjoint_dim``,
        ``singular_values``.

    Notes
    -----
    ``patches`` ``(N, K, *spatial)`` have rows on the simplex along ``K``; ``distances`` and ``log_assignment``
    ``(N, J, *spatial)``, ``J >= 2``.  float32 and float64 on CPU and CUDA; float16/bfloat16 are refused (cast
    with ``.float()``).  Under ``torch.compile`` the layer runs eagerly (``torch.compiler.disable``).

    Examples
    --------
    >>> import torch
    >>> layer = LinearizedAssignmentLayer(rho=0.5, T=2.0)
    >>> p = torch.full((2, 9, 5, 6), 1 / 9, dtype=torch.float64, requires_grad=True)
    >>> D = torch.rand(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    >>> layer(p, D).exp().sum(1).allclose(torch.ones(2, 5, 6, dtype=torch.float64))
    True
    >>> torch.nn.functional.nll_loss(layer(p, D), torch.zeros(2, 5, 6, dtype=torch.long)).backward()
    >>> p.grad.shape, D.grad.shape
    (torch.Size([2, 9, 5, 6]), torch.Size([2, 3, 5, 6]))
    """

    def __init__(self, rho: float = 1.0, T: float = 5.0, method=LowRank(), *, size: int = 3,
                 neighbourhood: int = 26):
        super().__init__()
        self.method = check_method(method)
        self.rho, self.T = check_positive("rho", rho), check_positive("T", T)
        self.size = check_int("size", size, minimum=1, odd=True)
        self.neighbourhood = _check_neighbourhood(neighbourhood)
        self.stats: dict = {}

    def extra_repr(self) -> str:
        return (f"rho={self.rho}, T={self.T}, method={self.method}, size={self.size}, "
                f"neighbourhood={self.neighbourhood}")

    def patch_size(self, spatial_dims: int) -> int:
        """``K``: stencil slots of a 2-D or 3-D input."""
        return self.size**2 if spatial_dims == 2 else (7 if self.neighbourhood == 6 else 27)

    def structure(self, spatial: tuple, device) -> WeightOperator:
        """The stencil of one spatial shape ``(H, W)`` or ``(D, H, W)`` on ``device`` (cached, shared by all layers)."""
        stencil = self.size if len(spatial) == 2 else self.neighbourhood
        key = (tuple(spatial), str(torch.device(device)), stencil)
        if key not in _STRUCTURES:
            _STRUCTURES[key] = (GridWeights(*spatial, self.size, device=device) if len(spatial) == 2
                                else GridWeights3D(*spatial, neighbourhood=self.neighbourhood, device=device))
            if len(_STRUCTURES) > _CACHED_SHAPES:
                _STRUCTURES.popitem(last=False)
        _STRUCTURES.move_to_end(key)
        return _STRUCTURES[key]

    def _flat(self, patches: torch.Tensor, distances: torch.Tensor, log_assignment):
        for name, x in (("patches", patches), ("distances", distances)):
            if not isinstance(x, torch.Tensor):
                raise UserTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if distances.ndim not in (4, 5):
            raise UserInputError(f"distances must have shape (N, J, H, W) or (N, J, D, H, W), got "
                                 f"{tuple(distances.shape)}")
        n, spatial = distances.shape[0], tuple(distances.shape[2:])
        K = self.patch_size(len(spatial))
        if tuple(patches.shape) != (n, K, *spatial):
            raise UserInputError(f"patches must have shape {(n, K, *spatial)} (N, K stencil slots, *spatial), "
                                 f"got {tuple(patches.shape)}")

        def flat(x):  # (N, C, *spatial) -> (N, I, C), pixels row-major
            return x.movedim(1, -1).reshape(n, -1, x.shape[1])

        if log_assignment is not None and (not isinstance(log_assignment, torch.Tensor)
                                           or log_assignment.shape != distances.shape):
            raise UserInputError(f"log_assignment must be a tensor of the distances' shape {tuple(distances.shape)}, "
                                 f"got {tuple(getattr(log_assignment, 'shape', ())) or type(log_assignment).__name__}")
        return flat(patches), flat(distances), None if log_assignment is None else flat(log_assignment), spatial

    @torch.compiler.disable
    def tangent(self, patches: torch.Tensor, distances: torch.Tensor,
                log_assignment: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`V_T` ``(N, J, *spatial)``."""
        p, D, log_w, spatial = self._flat(patches, distances, log_assignment)
        self.stats = {}
        V = linearized_flow(p, D, self.structure(spatial, distances.device), rho=self.rho, T=self.T,
                            method=self.method, log_assignment=log_w, stats=self.stats)
        return V.reshape(V.shape[0], *spatial, V.shape[-1]).movedim(-1, 1)

    def forward(self, patches: torch.Tensor, distances: torch.Tensor,
                log_assignment: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\log W_T = \mathrm{log\,softmax}(\log W + JV_T)` ``(N, J, *spatial)`` (:math:`\log W` the
        barycenter :math:`-\log J` by default)."""
        V = self.tangent(patches, distances, log_assignment)
        J = V.shape[1]
        return torch.log_softmax(J * V if log_assignment is None else log_assignment + J * V, dim=1)

    def assignment(self, patches: torch.Tensor, distances: torch.Tensor,
                   log_assignment: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`W_T` ``(N, J, *spatial)``."""
        return self(patches, distances, log_assignment).exp()
