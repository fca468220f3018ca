r"""The linearized assignment flow as a differentiable function of a batch, with the closed-form backward.

Every use of the linearized flow goes through :func:`linearized_flow`.  A batch of ``B`` samples on one
neighbourhood structure is one block-diagonal problem (:class:`~flowlearn.graphs.BatchWeights`), each sample in
its own Krylov space, so a batch equals its samples computed one by one.  Forward (paper 000, (2.22)--(2.24)):
:math:`S = \mathrm{softmax}(\Omega(\log W - D/\rho))`, :math:`B = \frac1J\Pi_0S`, :math:`AU = R_S(\Omega U)`,
:math:`V_T = T\varphi(TA)B`, :math:`W_T = \mathrm{softmax}(\log W + JV_T)` (the re-linearization step (1.6));
:math:`W` enters only through :math:`D - \rho\log W`.  Backward: Theorem 3.8
(:mod:`~flowlearn.linearized.closed_form`), then :meth:`~flowlearn.graphs.WeightOperator.grad_to_patches`.

References
----------
Zeilmann, Petra, Schnörr, *Learning linearized assignment flows for image labeling* (paper 000),
Thm 3.8, (3.42)--(3.47), eq. (1.6); Benzi, Simoncini, *Approximation of functions of large matrices with
Kronecker structure*, Numer. Math. 135 (2017).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .._checks import (UserInputError, UserTypeError, check_dtype_float, check_finite, check_positive,
                       check_probability_rows)
from ..graphs import BatchWeights, WeightOperator
from ..status import Status
from .closed_form import data_term_gradients, exact_backward, exact_forward, krylov_backward, krylov_forward
from .methods import AutodiffEuler, AutodiffExpint, DenseAutograd, Exact, LowRank, check_method
from .system import LinearizedSystem

__all__ = ["LinearizedFlowFunction", "linearized_flow", "reference_tangent", "tangent_to_assignment"]


def tangent_to_assignment(V: torch.Tensor, log_assignment: torch.Tensor | None = None) -> torch.Tensor:
    r""":math:`W_T = \mathrm{softmax}(\log W + JV_T)` (``softmax(J V)`` at the barycenter), labels last."""
    J = V.shape[-1]
    return torch.softmax(J * V if log_assignment is None else log_assignment + J * V, dim=-1)


def _system(structure: WeightOperator, patches: torch.Tensor, distances: torch.Tensor, rho: float):
    scaled = distances / rho
    return LinearizedSystem.at(BatchWeights(structure, patches), scaled), scaled


def _record(stats, **values) -> None:
    if stats is not None:
        stats.update(values)


class _OneSample:
    """Stats of an unbatched call: the per-sample lists of a batch of one, unwrapped into the user's dict."""

    def __init__(self, target: dict):
        self.target = target

    def update(self, values: dict) -> None:
        for k, v in values.items():
            self.target[k] = v[0] if isinstance(v, list) and len(v) == 1 else v


class LinearizedFlowFunction(torch.autograd.Function):
    r"""``apply(patches (B, I, N), distances (B, I, J), structure, rho, T, method, stats) -> V_T (B, I, J)``
    for :class:`LowRank` or :class:`Exact`, ``structure`` on the patches' device; inputs are not validated
    here (see :func:`linearized_flow`)."""

    @staticmethod
    def forward(ctx, patches, distances, structure, rho, T, method, stats):
        system, _ = _system(structure, patches, distances, rho)
        if isinstance(method, Exact):
            ctx.state, V = exact_forward(system, T)
            _record(stats, status=[Status.SUCCESS] * V.shape[0])
        else:
            ctx.state = krylov_forward(system, T, method.m, keep_basis=not method.recompute_forward)
            V = ctx.state.tangent
            _record(stats, krylov_dim=ctx.state.dim, forward_breakdown=ctx.state.breakdown,
                    status=[Status.BREAKDOWN if b else Status.SUCCESS for b in ctx.state.breakdown])
        ctx.save_for_backward(patches, distances)
        ctx.structure, ctx.rho, ctx.T, ctx.method, ctx.stats = structure, rho, T, method, stats
        return V

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_V):
        patches, distances = ctx.saved_tensors
        system, scaled = _system(ctx.structure, patches, distances, ctx.rho)
        g = grad_V.to(patches.dtype).contiguous()
        if isinstance(ctx.method, Exact):
            terms, grad_b = exact_backward(system, ctx.state, g, ctx.T)
        else:
            terms, grad_b, info = krylov_backward(system, ctx.state, g, ctx.T, ctx.method.m, ctx.method.rank)
            passes = 2 if ctx.method.recompute_forward else 1      # products with A and A^T
            info["matvecs"] = [d * passes + a + info["rank"] for d, a in zip(ctx.state.dim, info["adjoint_dim"])]
            _record(ctx.stats, **info)
        grad_w, grad_scaled = data_term_gradients(system, scaled, terms, grad_b)
        grad_p = system.weights.grad_to_patches(grad_w) if ctx.needs_input_grad[0] else None
        grad_d = grad_scaled / ctx.rho if ctx.needs_input_grad[1] else None
        return grad_p, grad_d, None, None, None, None, None


def reference_tangent(structure: WeightOperator, patches: torch.Tensor, distances: torch.Tensor, rho: float,
                      T: float) -> torch.Tensor:
    r""":math:`V_T` ``(B, I, J)`` of :func:`~flowlearn.linearized.closed_form.exact_forward`, differentiated by
    plain autograd instead of Theorem 3.8 (the independent reference of the tests)."""
    system, _ = _system(structure, patches, distances, rho)
    return exact_forward(system, T)[1]


def _check_inputs(structure: WeightOperator, patches, distances, log_assignment) -> None:
    for name, x in (("patches", patches), ("distances", distances)):
        if not isinstance(x, torch.Tensor):
            raise UserTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        check_dtype_float(name, x)
    I, N = structure.num_nodes, structure.patch_size
    if patches.ndim not in (2, 3) or tuple(patches.shape[-2:]) != (I, N):
        raise UserInputError(f"patches must have shape ([B,] {I}, {N}) ([batch,] nodes, stencil slots), "
                             f"got {tuple(patches.shape)}")
    if (distances.ndim != patches.ndim or distances.shape[:-1] != patches.shape[:-1]
            or distances.shape[-1] < 2):
        lead = "" if patches.ndim == 2 else f"{patches.shape[0]}, "
        raise UserInputError(f"distances must have shape ({lead}{I}, J) with J >= 2, got {tuple(distances.shape)}")
    if distances.dtype != patches.dtype or distances.device != patches.device:
        raise UserInputError(f"patches and distances must share dtype and device, got {patches.dtype}/"
                             f"{patches.device} and {distances.dtype}/{distances.device}")
    with torch.no_grad():
        atol = 1e-5 if patches.dtype != torch.float64 else 1e-6
        check_probability_rows("patches", patches, strict=False, atol=atol)
        mass = (patches * structure.mask.to(patches.device)).sum(-1)
        if bool((mass <= 0).any()):
            k = int((mass.reshape(-1) <= 0).nonzero()[0]) % I
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
    r""":math:`V_T` ``([B,] I, J)`` of one sample or a batch on the graph of ``weights``, in the inputs'
    dtype/device; differentiable in ``patches`` and ``distances``.

    Parameters
    ----------
    patches : tensor ``([B,] I, N)``
        Weight patches, rows on the simplex (renormalised over the valid slots of ``weights``).
    distances : tensor ``([B,] I, J)``
        Distances :math:`D` (any finite reals; the data term is invariant to a row-wise shift).
    weights : WeightOperator
        The neighbourhood structure (its own patches are ignored), e.g. ``GridWeights(H, W, 3)``.
    method : one of :data:`~flowlearn.linearized.methods.METHODS`
        The autodiff baselines integrate a batch as one ODE (their step control sees the whole batch).
    log_assignment : tensor ``([B,] I, J)``, optional
        :math:`\log W` of the linearization point (default the barycenter).
    stats : dict, optional
        Filled with per-sample lists: Krylov dimensions and ``status`` (forward), adjoint dimensions and
        singular values of :math:`X` (backward).
    check_inputs : bool
        Validate shapes, dtypes, simplex rows and finiteness.
    """
    if not isinstance(weights, WeightOperator):
        raise UserTypeError(f"weights must be a WeightOperator, got {type(weights).__name__}")
    check_method(method)
    rho, T = check_positive("rho", rho), check_positive("T", T)
    if check_inputs:
        _check_inputs(weights, patches, distances, log_assignment)
    if patches.ndim == 2:
        log_w = None if log_assignment is None else log_assignment.unsqueeze(0)
        return linearized_flow(patches.unsqueeze(0), distances.unsqueeze(0), weights, rho=rho, T=T, method=method,
                               log_assignment=log_w, stats=None if stats is None else _OneSample(stats),
                               check_inputs=False).squeeze(0)
    if weights.device != patches.device:
        weights = weights.to(device=patches.device)
    if log_assignment is not None:
        distances = distances - rho * log_assignment
    if isinstance(method, DenseAutograd):
        return reference_tangent(weights, patches, distances, rho, T)
    if isinstance(method, (AutodiffEuler, AutodiffExpint)):
        return _integrated_tangent(weights, patches, distances, rho, T, method, stats)
    return LinearizedFlowFunction.apply(patches, distances, weights, rho, T, method, stats)


def _integrated_tangent(structure, patches, distances, rho, T, method, stats):
    """:math:`V_T` by a numerical integrator, differentiable by autograd through every step (the baselines)."""
    system, _ = _system(structure, patches, distances, rho)
    sol = method.integrator().solve(system.matvec, system.B, T)
    _record(stats, **{k: v for k, v in sol.stats.items() if isinstance(v, (int, float))}, status=sol.status)
    return sol.y
