r"""Optimizers on the product of patch simplices, used exactly like ``torch.optim`` optimizers.

Parameters are tensors ``(I, N)`` whose rows are points of the open simplex; their ``.grad`` holds
the *Euclidean* gradient :math:`\partial_p\mathcal L`.

* :class:`RiemannianSGD` -- step (3.7): :math:`p_i \leftarrow \exp_{p_i}(-h\,\partial_{p_i}\mathcal L)
  = \mathrm{Exp}_{p_i}(-h\,R_{p_i}\partial_{p_i}\mathcal L)`, the Riemannian gradient step with respect to
  the Fisher--Rao metric and the e-exponential retraction.
* :class:`SimplexAdam` -- Adam moments of the Riemannian gradient :math:`R_p\partial\mathcal L` (the
  gradient with respect to the logits :math:`\log p`), followed by the same lifting map.

Rows stay in the open simplex by construction (the lifting map is a softmax); to survive floating-point
underflow after very large steps, entries are floored at ``min_weight`` and the rows renormalised.
"""

from __future__ import annotations

import abc

import torch

from .._checks import UserInputError, check_positive, check_probability_rows
from ..geometry import egrad2rgrad, lift

__all__ = ["RiemannianSGD", "SimplexAdam"]


def _check_param(p: torch.Tensor) -> None:
    if p.ndim != 2:
        raise UserInputError(f"simplex parameters must have shape (I, N), got {tuple(p.shape)}")
    with torch.no_grad():   # a point off the simplex would give NaN after one step
        check_probability_rows("simplex parameter", p, atol=1e-6 if p.dtype == torch.float64 else 1e-4)


def _retract(p: torch.Tensor, v: torch.Tensor, min_weight: float) -> None:
    """In place: ``p <- exp_p(v)``, floored at ``min_weight`` and renormalised."""
    q = lift(p, v).clamp_(min=min_weight)
    p.copy_(q / q.sum(-1, keepdim=True))


class _SimplexOptimizer(torch.optim.Optimizer, abc.ABC):
    """Shared ``step``: for every parameter with a gradient, ``p <- exp_p(direction(p, group))``."""

    def __init__(self, params, defaults: dict):
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                _check_param(p)

    @abc.abstractmethod
    def _direction(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """The tangent vector ``v`` of the update ``p <- exp_p(v)``."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    _retract(p, self._direction(p, group), group["min_weight"])
        return loss


class RiemannianSGD(_SimplexOptimizer):
    r"""Riemannian gradient descent (3.7) with step size ``lr`` (:math:`h`)."""

    def __init__(self, params, lr: float = 1.0, min_weight: float = 1e-12):
        super().__init__(params, dict(lr=check_positive("lr", lr), min_weight=check_positive("min_weight", min_weight)))

    def _direction(self, p, group):
        return -group["lr"] * p.grad


class SimplexAdam(_SimplexOptimizer):
    r"""Adam on the logits of simplex rows: moments of :math:`R_p\partial\mathcal L`, update by :math:`\exp_p`."""

    def __init__(self, params, lr: float = 0.05, betas=(0.9, 0.999), eps: float = 1e-8, min_weight: float = 1e-12):
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise UserInputError(f"betas must lie in [0, 1), got {tuple(betas)}")
        super().__init__(params, dict(lr=check_positive("lr", lr), betas=(b1, b2), eps=check_positive("eps", eps),
                                     min_weight=check_positive("min_weight", min_weight)))

    def _direction(self, p, group):
        b1, b2 = group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        g = egrad2rgrad(p, p.grad)
        state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = state["exp_avg"] / (1 - b1 ** state["step"])
        v_hat = state["exp_avg_sq"] / (1 - b2 ** state["step"])
        return -group["lr"] * m_hat / (v_hat.sqrt() + group["eps"])
