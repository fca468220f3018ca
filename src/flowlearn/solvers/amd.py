r"""Adaptive minimise-distance (AMD) solver: per-sample gradient descent with backtracking.

Flouris et al., *Explicit and data-efficient encoding via gradient flow*, Sect. 2.2, eqs. (6)--(7).
The gradient flow :math:`\dot z = -\nabla_z l(z)` is integrated by explicit Euler steps whose
size is chosen to *decrease the loss* rather than to control the integration error:

.. math::
    s_n = \min\big(\max(\kappa\, \delta t_{n-1},\; s_0),\; s_{\max}\big),\qquad
    \delta t_n = \beta^{m} s_n,\quad m = \min\{m \ge 0 : l(z_n - \beta^m s_n \nabla l(z_n)) < l(z_n)\},\qquad
    z_{n+1} = z_n - \delta t_n \nabla l(z_n).

**(choice)** The paper's :math:`\hat s_n = \max(\kappa s_{n-1}, s_0)` leaves open whether :math:`s_{n-1}`
is the previous trial scale or the previous accepted step; we grow the previous accepted step
:math:`\delta t_{n-1}`, so that a sample that needed heavy backtracking starts from a step it could afford.

Everything is **per sample** (step size, backtracking, integration time, stopping: see :class:`AMD`).  A
step is only accepted when the loss strictly decreases, so AMD **never increases** any sample's loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

import torch

from .._checks import UserInputError, UserTypeError, check_finite
from ..status import Status
from .base import _set_checked

__all__ = ["AMD", "AMDResult", "AMDStatus"]

AMDStatus = Status  #: per-sample statuses of AMD: CONVERGED, STALLED, FLAT, REACHED_TAU, MAX_STEPS, NONFINITE


@dataclass
class AMDResult:
    """Result of :meth:`AMD.minimize`; every per-sample field has leading dimension ``B``.

    Attributes
    ----------
    z, loss : tensors (B, ...), (B,)
        Final iterate (detached) and its loss, never larger than the initial loss.
    status : list of AMDStatus, length B
    steps, loss_evals, grad_evals : long tensors (B,)
        Accepted steps, loss-only evaluations (backtracking trials), loss-and-gradient evaluations.
    time : tensor (B,)
        Integration time reached, :math:`\\sum_n \\delta t_n` (the sample's :math:`\\tau'`).
    step_sizes, loss_history, states : tensors (n_iter, B), (n_iter + 1, B), (n_iter + 1, B, ...) or None
        :math:`\\delta t_n` of every iteration (0 where the sample did not move: replaying
        ``z <- z - step_sizes[n, :, None] * grad l(z)`` from ``z0`` reproduces ``z``); the loss after every
        iteration (NaN once a sample has stopped); the iterates when ``record_states=True``.
    stats : dict
        ``iterations``, ``loss_evals``, ``grad_evals`` (totals over the batch), ``status_counts``.
    """

    z: torch.Tensor
    loss: torch.Tensor
    status: list[AMDStatus]
    steps: torch.Tensor
    loss_evals: torch.Tensor
    grad_evals: torch.Tensor
    time: torch.Tensor
    step_sizes: torch.Tensor
    loss_history: torch.Tensor
    states: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)


LossFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class AMD:
    r"""Adaptive minimise-distance solver (paper 002, eqs. (6)--(7)), per sample; the defaults are the paper's.

    Parameters
    ----------
    beta, s0, smax, kappa : float, 0 < beta < 1, 0 < s0 <= smax, kappa >= 1
        Backtracking factor :math:`\beta`, bounds :math:`s_0`, :math:`s_{\max}` of the trial scale, growth
        :math:`\kappa` of the last accepted step.
    max_steps, max_backtracks : int
        Iteration budget (then ``MAX_STEPS``); trials per iteration before a sample is declared ``STALLED``
        (stationary to working precision).
    tau : float or None
        Final integration time :math:`\tau` (``REACHED_TAU``, the last step shortened to land on it).
    patience, flat_rtol : int, float
        Early stop (``FLAT``) when :math:`l_{n-p} - l_n \le \text{flat\_rtol}\, |l_{n-p}|` with ``p = patience``
        accepted steps; ``flat_rtol = 0`` disables it.
    gtol : float >= 0
        Stop (``CONVERGED``) when :math:`\|\nabla l\|_2 \le` ``gtol``.
    """

    beta: float = 0.75
    s0: float = 1.0
    smax: float = 10.0
    kappa: float = 1.1
    _: KW_ONLY
    max_steps: int = 200
    max_backtracks: int = 40
    tau: float | None = None
    patience: int = 5
    flat_rtol: float = 1e-3
    gtol: float = 0.0

    def __post_init__(self):
        _set_checked(self, positive=("beta", "s0", "smax", "kappa"), nonnegative=("flat_rtol", "gtol"),
                     ints={"max_steps": 1, "max_backtracks": 0, "patience": 1})
        if not self.beta < 1.0:
            raise UserInputError(f"beta must lie in (0, 1), got {self.beta!r}")
        if self.smax < self.s0:
            raise UserInputError(f"smax must be >= s0={self.s0}, got {self.smax!r}")
        if self.kappa < 1.0:
            raise UserInputError(f"kappa must be >= 1, got {self.kappa!r}")
        if self.tau is not None:
            _set_checked(self, positive=("tau",))

    def minimize(self, loss_fn: LossFn, z0: torch.Tensor, *, indexed: bool = False,
                 record_states: bool = False) -> AMDResult:
        """Minimise ``loss_fn`` independently for every row of ``z0`` (B, ...) (the paper starts from zeros).

        ``loss_fn(z) -> (B,)`` acts on the full batch (rows must not interact) or, with ``indexed=True``,
        ``loss_fn(z_rows, rows) -> (len(rows),)`` on the still-running samples ``rows`` only (what makes AMD
        cheap on batches); ``record_states`` keeps every iterate (``AMDResult.states``) for the full adjoint.
        """
        _check_start(z0)
        B, device, dtype = z0.shape[0], z0.device, z0.dtype
        bshape = (-1,) + (1,) * (z0.ndim - 1)
        z = z0.detach().clone()
        loss, grad = _value_and_grad(loss_fn, indexed, z, z, torch.arange(B, device=device))
        long = {"dtype": torch.long, "device": device}
        grad_evals, loss_evals, steps = torch.ones(B, **long), torch.zeros(B, **long), torch.zeros(B, **long)
        time, last_step = torch.zeros(B, dtype=dtype, device=device), torch.zeros(B, dtype=dtype, device=device)
        code = torch.full((B,), -1, **long)   # index into _CODES, -1 running
        active = _finite(loss, grad)
        code[~active] = _CODES.index(AMDStatus.NONFINITE)
        nan = torch.full_like(loss, math.nan)
        history = [torch.where(active, loss, nan)]
        recent = torch.full((B, self.patience + 1), math.nan, dtype=dtype, device=device)
        recent[:, -1] = loss
        step_log: list[torch.Tensor] = []
        states = [z.clone()] if record_states else None
        iterations = 0
        while iterations < self.max_steps:
            norms = grad.reshape(B, -1).norm(dim=1)
            _stop(code, active, active & (norms <= self.gtol), AMDStatus.CONVERGED)
            rows = active.nonzero().flatten()
            if rows.numel() == 0:
                break
            iterations += 1
            scale = torch.clamp(torch.clamp(self.kappa * last_step[rows], min=self.s0), max=self.smax)
            remaining = (self.tau - time[rows]) if self.tau is not None else None
            delta = torch.zeros_like(scale)
            new_loss = loss[rows].clone()
            new_z = z.index_select(0, rows).clone()
            search = torch.arange(rows.numel(), device=device)
            factor = 1.0
            for _ in range(self.max_backtracks + 1):
                trial_step = scale[search] * factor
                if remaining is not None:
                    trial_step = torch.minimum(trial_step, remaining[search])
                sr = rows[search]
                trial = z.index_select(0, sr) - trial_step.reshape(bshape) * grad.index_select(0, sr)
                with torch.no_grad():
                    trial_loss = _evaluate(loss_fn, indexed, z, trial, sr)
                loss_evals[sr] += 1
                ok = torch.isfinite(trial_loss) & (trial_loss < loss[sr])
                acc = search[ok]
                delta[acc], new_loss[acc], new_z[acc] = trial_step[ok], trial_loss[ok], trial[ok]
                search = search[~ok]
                if search.numel() == 0:
                    break
                factor *= self.beta
            _stop(code, active, _mask(B, rows[search], device), AMDStatus.STALLED)
            moved = delta > 0
            mrows = rows[moved]
            step_log.append(torch.zeros(B, dtype=dtype, device=device).index_copy(0, mrows, delta[moved]))
            if mrows.numel():
                z = z.index_copy(0, mrows, new_z[moved])
                time[mrows] += delta[moved]
                last_step[mrows] = delta[moved]
                steps[mrows] += 1
                # the accepted trial value is the one that was compared: strictly below the previous loss
                loss = loss.index_copy(0, mrows, new_loss[moved])
                recent[mrows] = torch.cat([recent[mrows, 1:], new_loss[moved, None]], dim=1)
                _, g = _value_and_grad(loss_fn, indexed, z, z.index_select(0, mrows), mrows)
                grad = grad.index_copy(0, mrows, g)
                grad_evals[mrows] += 1
                moved_mask = _mask(B, mrows, device)
                bad = mrows[~torch.isfinite(g.reshape(mrows.numel(), -1)).all(1)]
                _stop(code, active, _mask(B, bad, device), AMDStatus.NONFINITE)
                if self.tau is not None:
                    _stop(code, active, moved_mask & (time >= self.tau), AMDStatus.REACHED_TAU)
                if self.flat_rtol > 0:
                    past = recent[:, 0]
                    flat = moved_mask & (steps >= self.patience) & (past - loss <= self.flat_rtol * past.abs())
                    _stop(code, active, flat, AMDStatus.FLAT)
            if record_states:
                states.append(z.clone())
            history.append(torch.where(active | _mask(B, mrows, device), loss, nan))
        _stop(code, active, active.clone(), AMDStatus.MAX_STEPS)
        status, stats = _summary(code, iterations, loss_evals, grad_evals)
        step_sizes = torch.stack(step_log) if step_log else torch.zeros(0, B, dtype=dtype, device=device)
        return AMDResult(z=z, loss=loss, status=status, steps=steps, loss_evals=loss_evals,
                         grad_evals=grad_evals, time=time, step_sizes=step_sizes,
                         loss_history=torch.stack(history),
                         states=torch.stack(states) if record_states else None, stats=stats)


_CODES = list(AMDStatus)


def _check_start(z0) -> None:
    if not isinstance(z0, torch.Tensor) or not z0.is_floating_point() or z0.ndim < 1:
        detail = f" of dtype {z0.dtype} and shape {tuple(z0.shape)}" if isinstance(z0, torch.Tensor) else ""
        raise UserTypeError(f"z0 must be a floating tensor of shape (B, ...), got {type(z0).__name__}" + detail)
    check_finite("z0", z0)


def _evaluate(loss_fn: LossFn, indexed: bool, z_full: torch.Tensor, z_rows: torch.Tensor,
              rows: torch.Tensor) -> torch.Tensor:
    """Per-sample loss of ``z_rows`` (the rows ``rows`` of the batch), shape (len(rows),)."""
    if indexed:
        out = loss_fn(z_rows, rows)
    else:
        out = loss_fn(z_full.index_copy(0, rows, z_rows))
        if out.shape != (z_full.shape[0],):
            raise UserInputError(f"loss_fn must return shape ({z_full.shape[0]},), got {tuple(out.shape)}")
        out = out.index_select(0, rows)
    if out.shape != (rows.numel(),):
        raise UserInputError(f"loss_fn must return shape ({rows.numel()},), got {tuple(out.shape)}")
    return out


def _value_and_grad(loss_fn, indexed, z_full, z_rows, rows):
    """Loss and gradient of the rows ``z_rows`` (the rows ``rows`` of ``z_full``), both detached."""
    with torch.enable_grad():
        zr = z_rows.detach().requires_grad_(True)
        value = _evaluate(loss_fn, indexed, z_full.detach(), zr, rows)
        (grad,) = torch.autograd.grad(value.sum(), zr)
    return value.detach(), grad.detach()


def _summary(code, iterations: int, loss_evals, grad_evals) -> tuple[list, dict]:
    """Per-sample statuses from their codes, and the batch totals of the result's ``stats``."""
    status = [_CODES[c] for c in code.tolist()]
    counts = {s.value: sum(1 for x in status if x is s) for s in AMDStatus}
    return status, {"iterations": iterations, "loss_evals": int(loss_evals.sum()),
                    "grad_evals": int(grad_evals.sum()), "status_counts": counts}


def _stop(code, active, which, reason):
    """Mark the still-active samples in the bool mask ``which`` as stopped for ``reason``."""
    hit = which & active
    code[hit] = _CODES.index(reason)
    active &= ~hit


def _mask(B, rows, device):
    m = torch.zeros(B, dtype=torch.bool, device=device)
    m[rows] = True
    return m


def _finite(f, g):
    """Rows whose loss and gradient are finite."""
    return torch.isfinite(f) & torch.isfinite(g.reshape(g.shape[0], -1)).all(1)
