r"""The linearized assignment flow as a differentiable PyTorch layer with the closed-form backward.

Forward (paper 000, (2.22)--(2.24)): for weight patches :math:`p` ``(I, N)`` (rows on the simplex; the
effective weights :math:`\omega` are the masked, renormalised patches of a
:class:`~flowlearn.graphs.WeightOperator` stencil), distances :math:`D` ``(I, J)`` and a linearization
point :math:`W` (default the barycenter, :math:`\log W = -\log J`),

.. math:: S = \mathrm{softmax}\big(\Omega(\log W - D/\rho)\big),\quad B = \tfrac1J\Pi_0S,\quad
          AU = R_S(\Omega U),\qquad V_T = T\varphi(TA)B,\qquad W_T = \mathrm{softmax}(\log W + JV_T).

At the barycenter :math:`W_T = \mathrm{softmax}(JV_T) = \mathrm{Exp}_{\mathbb 1}(V_T)`; in general
:math:`W_T = \exp_W(JV_T)` (lifting map), the re-linearization step of (1.6) as in
:class:`~flowlearn.labeling.LinearizedFlowSequence`.  :math:`W` enters only through the effective
distances :math:`\tilde D = D - \rho\log W`, so the Function itself has two tensor inputs, ``patches`` and
``distances``.

Backward: for any cotangent :math:`g = \partial\ell/\partial V_T`, Theorem 3.8 gives
:math:`\langle g, dV_T\rangle = T\langle G_{11}, dA^J\rangle + T\langle G_{12}, db\rangle`
(:mod:`flowlearn.linearized.closed_form`, dense or Krylov/Benzi--Simoncini low rank (3.47)), and
:func:`~flowlearn.linearized.contraction.data_term_gradients` chains it through :math:`B` (M2), :math:`A`
(M3) and :math:`S` (M1):

.. math:: \partial_S = K + \tfrac1J\Pi_0\partial_B,\quad \partial_Z = R_S\partial_S,\quad
          \partial_\omega = \mathrm{direct} - \langle\partial_{Z_i}, \tilde D_{k(i,n)}/\rho\rangle,\quad
          \partial_D = -\tfrac1\rho\,\Omega^\top\partial_Z,

then :meth:`~flowlearn.graphs.WeightOperator.grad_to_patches`.  No autograd graph is built through the
solver; the backward is not itself differentiable (``once_differentiable``).

References
----------
Zeilmann, Petra, Schnörr, *Learning linearized assignment flows for image labeling* (paper 000),
Thm 3.8, (3.42)--(3.47), eq. (1.6); Benzi, Simoncini, *Approximation of functions of large matrices with
Kronecker structure*, Numer. Math. 135 (2017).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .._checks import (
    UserInputError,
    UserTypeError,
    check_dtype_float,
    check_finite,
    check_positive,
    check_probability_rows,
)
from ..graphs import WeightOperator
from .closed_form import (
    exact_backward,
    exact_forward,
    krylov_backward,
    krylov_forward,
)
from .contraction import data_term_gradients
from .methods import METHODS, AutodiffEuler, AutodiffExpint, DenseAutograd, Exact, LowRank
from .system import LinearizedSystem

__all__ = ["LinearizedAssignmentLayer", "LinearizedFlowFunction", "linearized_flow", "reference_tangent",
           "tangent_to_assignment"]


def tangent_to_assignment(V: torch.Tensor, log_assignment: torch.Tensor | None = None) -> torch.Tensor:
    r""":math:`W_T = \mathrm{softmax}(\log W + JV_T)` ``(I, J)`` (``softmax(J V)`` at the barycenter)."""
    J = V.shape[-1]
    return torch.softmax(J * V if log_assignment is None else log_assignment + J * V, dim=-1)


def _system(weights: WeightOperator, patches: torch.Tensor, distances: torch.Tensor, rho: float):
    scaled = distances / rho
    return LinearizedSystem.at(weights.with_patches(patches), scaled), scaled


class LinearizedFlowFunction(torch.autograd.Function):
    r"""``apply(patches (I, N), distances (I, J), weights, rho, T, method, stats) -> V_T (I, J)``.

    ``weights``: a :class:`~flowlearn.graphs.WeightOperator` of the patches' dtype/device (structure
    only); ``method``: :class:`LowRank` or :class:`Exact`; ``stats``: a dict that receives the Krylov
    dimensions and singular values, or ``None``.  Inputs are not validated here (see
    :func:`linearized_flow`).
    """

    @staticmethod
    def forward(ctx, patches, distances, weights, rho, T, method, stats):
        system, _ = _system(weights, patches, distances, rho)
        if isinstance(method, Exact):
            ctx.state, V = exact_forward(system, T)
        else:
            ctx.state = krylov_forward(system, T, method.m, keep_basis=not method.recompute_forward)
            V = ctx.state.tangent
            if stats is not None:
                stats.update(krylov_dim=ctx.state.dim, forward_breakdown=ctx.state.breakdown)
        ctx.save_for_backward(patches, distances)
        ctx.weights, ctx.rho, ctx.T, ctx.method, ctx.stats = weights, rho, T, method, stats
        return V

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_V):
        patches, distances = ctx.saved_tensors
        system, scaled = _system(ctx.weights, patches, distances, ctx.rho)
        g = grad_V.to(patches.dtype).contiguous()
        if isinstance(ctx.method, Exact):
            terms, grad_b = exact_backward(system, ctx.state, g, ctx.T)
        else:
            terms, grad_b, info = krylov_backward(system, ctx.state, g, ctx.T, ctx.method.m, ctx.method.rank)
            if ctx.stats is not None:
                passes = 2 if ctx.method.recompute_forward else 1      # products with A and A^T
                info["matvecs"] = ctx.state.dim * passes + info["adjoint_dim"] + info.get("rank", 0)
                ctx.stats.update(info)
        grad_w, grad_scaled = data_term_gradients(system, scaled, terms, grad_b)
        grad_p = system.weights.grad_to_patches(grad_w) if ctx.needs_input_grad[0] else None
        grad_d = grad_scaled / ctx.rho if ctx.needs_input_grad[1] else None
        return grad_p, grad_d, None, None, None, None, None


def reference_tangent(weights: WeightOperator, patches: torch.Tensor, distances: torch.Tensor, rho: float,
                      T: float) -> torch.Tensor:
    r""":math:`V_T = [e^{\mathcal A}]_{1:IJ,k}` with the dense augmented matrix, differentiable by plain
    autograd in ``patches`` and ``distances`` (the independent reference of the tests): the forward of
    :func:`~flowlearn.linearized.closed_form.exact_forward`, differentiated by autograd instead of Theorem 3.8."""
    system, _ = _system(weights, patches, distances, rho)
    return exact_forward(system, T)[1]


def _check_inputs(weights: WeightOperator, patches, distances, log_assignment) -> None:
    for name, x in (("patches", patches), ("distances", distances)):
        if not isinstance(x, torch.Tensor):
            raise UserTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        check_dtype_float(name, x)
    I, N = weights.num_nodes, weights.patch_size
    if patches.ndim != 2 or tuple(patches.shape) != (I, N):
        raise UserInputError(f"patches must have shape ({I}, {N}) (nodes, stencil slots), got {tuple(patches.shape)}")
    if distances.ndim != 2 or distances.shape[0] != I or distances.shape[1] < 2:
        raise UserInputError(f"distances must have shape ({I}, J) with J >= 2, got {tuple(distances.shape)}")
    if distances.dtype != patches.dtype or distances.device != patches.device:
        raise UserInputError(f"patches and distances must share dtype and device, got {patches.dtype}/"
                             f"{patches.device} and {distances.dtype}/{distances.device}")
    with torch.no_grad():
        atol = 1e-5 if patches.dtype != torch.float64 else 1e-6
        check_probability_rows("patches", patches, strict=False, atol=atol)
        mask = weights.mask.to(patches.device)
        mass = (patches * mask).sum(-1)
        if bool((mass <= 0).any()):
            k = int((mass <= 0).nonzero()[0])
            raise UserInputError(f"patches give node {k} zero weight on its valid neighbours")
        check_finite("distances", distances)
        if log_assignment is not None:
            if not isinstance(log_assignment, torch.Tensor) or log_assignment.shape != distances.shape:
                raise UserInputError(f"log_assignment must be a tensor of the distances' shape "
                                     f"{tuple(distances.shape)}, got {getattr(log_assignment, 'shape', None)}")
            check_finite("log_assignment", log_assignment)


def linearized_flow(patches: torch.Tensor, distances: torch.Tensor, weights: WeightOperator, *, rho: float = 1.0,
                    T: float = 5.0, method=LowRank(), log_assignment: torch.Tensor | None = None,
                    stats: dict | None = None, check_inputs: bool = True) -> torch.Tensor:
    r"""Functional form of :class:`LinearizedAssignmentLayer`: :math:`V_T` ``(I, J)`` in the inputs' dtype/device.

    Parameters
    ----------
    patches : tensor ``(I, N)``
        Weight patches, rows on the simplex (renormalised over the valid slots of ``weights``).
    distances : tensor ``(I, J)``
        Distances :math:`D` (any finite reals; the data term is invariant to a row-wise shift).
    weights : WeightOperator
        The stencil (its own patches are ignored).
    rho, T : float > 0
    method : one of :data:`~flowlearn.linearized.methods.METHODS`
    log_assignment : tensor ``(I, J)``, optional
        :math:`\log W` of the linearization point (default the barycenter).
    stats : dict, optional
        Filled with Krylov dimensions (forward) and singular values of :math:`X` (backward).
    check_inputs : bool
        Validate shapes, dtypes, simplex rows and finiteness (one-line ``UserInputError``).
    """
    if not isinstance(weights, WeightOperator):
        raise UserTypeError(f"weights must be a WeightOperator, got {type(weights).__name__}")
    if not isinstance(method, METHODS):
        raise UserTypeError(f"method must be one of {[m.__name__ for m in METHODS]}, got {method!r}")
    rho, T = check_positive("rho", rho), check_positive("T", T)
    if check_inputs:
        _check_inputs(weights, patches, distances, log_assignment)
    if weights.dtype != patches.dtype or weights.device != patches.device:
        weights = weights.to(device=patches.device, dtype=patches.dtype)
    if log_assignment is not None:
        distances = distances - rho * log_assignment
    if isinstance(method, DenseAutograd):
        return reference_tangent(weights, patches, distances, rho, T)
    if isinstance(method, (AutodiffEuler, AutodiffExpint)):
        return _integrated_tangent(weights, patches, distances, rho, T, method, stats)
    return LinearizedFlowFunction.apply(patches, distances, weights, rho, T, method, stats)


def _integrated_tangent(weights, patches, distances, rho, T, method, stats):
    """:math:`V_T` by a numerical integrator, differentiable by autograd through every step (the baselines)."""
    system, _ = _system(weights, patches, distances, rho)
    sol = method.integrator().solve(system.matvec, system.B, T)
    if stats is not None:
        stats.update({k: v for k, v in sol.stats.items() if isinstance(v, (int, float))}, status=sol.status)
    return sol.y


class LinearizedAssignmentLayer(nn.Module):
    r"""``layer(patches (I, N), distances (I, J), log_assignment=None) -> V_T (I, J)``, closed-form backward.

    Parameters
    ----------
    weights : WeightOperator
        Stencil (e.g. ``GridWeights(H, W, 3)``); its patches are ignored, the layer's input replaces them.
    rho : float > 0
        Scale of the data term.
    T : float > 0
        Integration time.
    method : LowRank, Exact, DenseAutograd, AutodiffEuler or AutodiffExpint
        How V_T and its gradient are computed (default ``LowRank(m=10, rank=1)``).

    Attributes
    ----------
    stats : dict
        Krylov dimensions and singular values of the last forward/backward (``LowRank`` only).

    Examples
    --------
    >>> import torch
    >>> from flowlearn.graphs import GridWeights
    >>> layer = LinearizedAssignmentLayer(GridWeights(4, 4, 3, dtype=torch.float64), rho=0.5, T=2.0)
    >>> p = torch.full((16, 9), 1 / 9, dtype=torch.float64, requires_grad=True)
    >>> D = torch.rand(16, 3, dtype=torch.float64, requires_grad=True)
    >>> layer(p, D).square().sum().backward()
    >>> p.grad.shape, D.grad.shape
    (torch.Size([16, 9]), torch.Size([16, 3]))
    """

    def __init__(self, weights: WeightOperator, rho: float = 1.0, T: float = 5.0, method=LowRank()):
        super().__init__()
        if not isinstance(weights, WeightOperator):
            raise UserTypeError(f"weights must be a WeightOperator, got {type(weights).__name__}")
        if not isinstance(method, METHODS):
            raise UserTypeError(f"method must be one of {[m.__name__ for m in METHODS]}, got {method!r}")
        self.weights, self.method = weights, method
        self.rho, self.T = check_positive("rho", rho), check_positive("T", T)
        self.stats: dict = {}
        self._structures: dict = {}

    def extra_repr(self) -> str:
        return f"{self.weights!r}, rho={self.rho}, T={self.T}, method={self.method}"

    def _weights_like(self, x: torch.Tensor) -> WeightOperator:
        key = (x.dtype, str(x.device))
        if key not in self._structures:  # one converted stencil per dtype/device (its CSR pattern is cached)
            self._structures[key] = self.weights.to(device=x.device, dtype=x.dtype)
        return self._structures[key]

    def forward(self, patches: torch.Tensor, distances: torch.Tensor,
                log_assignment: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`V_T` ``(I, J)``; see :func:`linearized_flow`."""
        _check_inputs(self.weights, patches, distances, log_assignment)
        return linearized_flow(patches, distances, self._weights_like(patches), rho=self.rho, T=self.T,
                               method=self.method, log_assignment=log_assignment, stats=self.stats,
                               check_inputs=False)

    def assignment(self, patches: torch.Tensor, distances: torch.Tensor,
                   log_assignment: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`W_T = \mathrm{softmax}(\log W + JV_T)` ``(I, J)`` (:func:`tangent_to_assignment`)."""
        return tangent_to_assignment(self(patches, distances, log_assignment), log_assignment)
