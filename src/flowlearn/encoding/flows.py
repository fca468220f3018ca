"""Reconstruction losses, time schedules and the vector fields of gradient flow encoding (paper 002).

Gradients are taken of :math:`\\sum_b l_b`, so row ``b`` of the gradient is :math:`\\nabla_{z_b} l_b` as long as
the decoder treats rows independently (no batch normalisation).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .._checks import check_positive
from .losses import resolve_loss

__all__ = ["GradientFlowField", "NesterovField", "alpha_schedule", "reconstruction_loss"]


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind="bce") -> torch.Tensor:
    """Per-sample loss (B,), mean over pixels, of ``recon`` against ``target`` (B, ...): ``kind`` is ``"bce"``,
    ``"mse"``, ``"gaussian"`` or any callable ``loss(recon, target) -> (B,)`` (see :mod:`flowlearn.encoding.losses`)."""
    return resolve_loss(kind)(recon, target)


def alpha_schedule(tau: float | None) -> Callable[[float], float]:
    r"""The scaling :math:`\alpha(t)` of (1): ``None`` gives :math:`1`, a number
    :math:`\tau` gives :math:`e^{-2t/\tau}` (App. A.2)."""
    if tau is None:
        return lambda t: 1.0
    tau = check_positive("alpha_tau", tau)
    return lambda t: math.exp(-2.0 * t / tau)


class _LossGradient:
    """``grad(z)``: row-wise :math:`\\nabla_{z_b} l(y_b, D(z_b))` for the rows ``rows`` of the batch."""

    def __init__(self, decoder: Callable, target: torch.Tensor, loss="bce"):
        self.decoder = decoder
        self.target = target
        self.loss = resolve_loss(loss)
        self.evaluations = 0

    def losses(self, z: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        target = self.target if rows is None else self.target.index_select(0, rows)
        return self.loss(self.decoder(z), target)

    def __call__(self, z: torch.Tensor, *, create_graph: bool, rows: torch.Tensor | None = None):
        self.evaluations += 1
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            value = self.losses(z, rows).sum()
            (g,) = torch.autograd.grad(value, z, create_graph=create_graph)
        return g


class GradientFlowField:
    r"""Vector field of (1): :math:`\dot z = -\alpha(t)\,\nabla_z l(y, D(z))`, :math:`z(0) = 0`, state ``z`` of
    shape (B, d); ``create_graph=True`` keeps the graph (for unrolled backprop and adjoint replays)."""

    def __init__(self, decoder, target, loss="bce", alpha_tau: float | None = None,
                 *, create_graph: bool = False):
        self.gradient = _LossGradient(decoder, target, loss)
        self.alpha = alpha_schedule(alpha_tau)
        self.create_graph = create_graph

    def latent(self, state: torch.Tensor) -> torch.Tensor:
        """The code ``z`` held by the state: the state itself (so is :meth:`initial_state` of a code)."""
        return state

    initial_state = latent

    def __call__(self, t: float, z: torch.Tensor) -> torch.Tensor:
        return -self.alpha(t) * self.gradient(z, create_graph=self.create_graph)


class NesterovField:
    r"""Vector field of the Nesterov flow (5) (Su, Boyd & Candès 2016) split into first order on the stacked
    state ``(B, 2, d)`` = ``(z, v)``, :math:`z(0) = v(0) = 0` (with the sign of descent; the paper drops the minus):

    .. math:: \dot z = v,\qquad \dot v = -\frac{3}{t+\epsilon}\, v - \nabla_z l(y, D(z)).
    """

    def __init__(self, decoder, target, loss="bce", eps: float = 1e-2, *, create_graph: bool = False):
        self.gradient = _LossGradient(decoder, target, loss)
        self.eps = check_positive("nesterov_eps", eps)
        self.create_graph = create_graph

    def latent(self, state: torch.Tensor) -> torch.Tensor:
        """The code ``z = state[:, 0]`` (B, d)."""
        return state[:, 0]

    def initial_state(self, z0: torch.Tensor) -> torch.Tensor:
        """The stacked state ``(z0, 0)`` (B, 2, d): initial code, zero velocity."""
        return torch.stack([z0, torch.zeros_like(z0)], dim=1)

    def __call__(self, t: float, state: torch.Tensor) -> torch.Tensor:
        z, v = state[:, 0], state[:, 1]
        g = self.gradient(z, create_graph=self.create_graph)
        return torch.stack([v, -(3.0 / (t + self.eps)) * v - g], dim=1)
