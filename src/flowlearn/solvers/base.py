"""One integrate entry point for fixed-grid ODE solvers.

A solver implements only its :meth:`Solver.step`; :func:`integrate` owns the time
loop, early termination, saving and statistics, and returns a :class:`Solution`.

Geometric integration of flows on the assignment manifold uses the same solvers:
with the tangent-space parametrisation :math:`W = \\exp_{W_0}(V)` the flow becomes
an ODE for :math:`V` in a vector space, and explicit Euler on :math:`V` *is* the
geometric Euler scheme :math:`W \\leftarrow \\exp_W(h\\,S(W))` (Zeilmann et al. 2020).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .._checks import (
    UserInputError,
    UserTypeError,
    check_finite,
    check_int,
    check_positive,
)
from ..status import Status

__all__ = ["LinearODEResult", "Solution", "Solver", "Status", "integrate", "linear_grid", "log_grid"]

VectorField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]



@dataclass
class Solution:
    """Result of :func:`integrate`.

    Attributes
    ----------
    t : float
        Final time reached.
    y : tensor
        State at time ``t``.
    ts, ys : tensor or None
        Saved times (n,) and states (n, *y.shape) when ``save=True``, else ``None``.
    status : Status
    stats : dict
        ``steps`` (accepted steps) and ``nfev`` (vector-field evaluations).
    """

    t: float
    y: torch.Tensor
    status: Status
    stats: dict = field(default_factory=dict)
    ts: torch.Tensor | None = None
    ys: torch.Tensor | None = None


@dataclass
class LinearODEResult:
    """Solution :math:`y(t)` of :math:`\\dot y = Ay + b`, :math:`y(0)=0` (or :math:`y_0`).

    ``error_estimate`` is the Krylov a-posteriori estimate (NaN for time stepping);
    ``status`` is the underlying solver's :class:`~flowlearn.status.Status`; ``stats`` counts work.
    """

    y: torch.Tensor
    error_estimate: float
    status: Status
    stats: dict = field(default_factory=dict)


class Solver(abc.ABC):
    """A one-step method ``y_{n+1} = step(f, t_n, y_n, h)`` for ``dy/dt = f(t, y)``."""

    #: classical order of accuracy
    order: int = 1
    #: vector-field evaluations per step
    stages: int = 1
    #: hyperparameters (none: a step method is identified by its type; see flowlearn.engine.spec)
    hparams: ClassVar[dict] = {}

    @abc.abstractmethod
    def step(self, f: VectorField, t: float, y: torch.Tensor, h: float) -> torch.Tensor:
        """Advance ``y`` from ``t`` to ``t + h``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _set_checked(obj, *, positive=(), nonnegative=(), ints=None) -> None:
    """Check fields of the frozen dataclass ``obj`` and store them normalised: ``positive`` (floats > 0),
    ``nonnegative`` (floats >= 0) and ``ints`` (``{name: minimum}``)."""
    for name in positive:
        object.__setattr__(obj, name, check_positive(name, getattr(obj, name)))
    for name in nonnegative:
        object.__setattr__(obj, name, check_positive(name, getattr(obj, name), strict=False))
    for name, minimum in (ints or {}).items():
        object.__setattr__(obj, name, check_int(name, getattr(obj, name), minimum=minimum))


def linear_grid(t1: float, steps: int, t0: float = 0.0, *, dtype=torch.float64) -> torch.Tensor:
    """``steps + 1`` equally spaced times from ``t0`` to ``t1``."""
    steps = check_int("steps", steps, minimum=1)
    if not t1 > t0:
        raise UserInputError(f"t1 must be greater than t0={t0}, got {t1}")
    return torch.linspace(float(t0), float(t1), steps + 1, dtype=dtype)


def log_grid(t1: float, steps: int, t_first: float | None = None, *, dtype=torch.float64) -> torch.Tensor:
    """``0`` followed by ``steps`` log-spaced times from ``t_first`` (default ``t1/10**3``) to ``t1``.

    Small steps early, large steps late: suited to gradient flows whose
    trajectories move fast at first and slowly later.
    """
    steps = check_int("steps", steps, minimum=1)
    t1 = check_positive("t1", t1)
    t_first = t1 * 1e-3 if t_first is None else check_positive("t_first", t_first)
    if not t_first < t1:
        raise UserInputError(f"t_first must be smaller than t1={t1}, got {t_first}")
    pos = torch.logspace(torch.log10(torch.tensor(t_first)).item(), torch.log10(torch.tensor(t1)).item(),
                         steps, dtype=dtype)
    return torch.cat([torch.zeros(1, dtype=dtype), pos])


def integrate(
    f: VectorField,
    y0: torch.Tensor,
    ts: torch.Tensor,
    solver: Solver,
    *,
    terminate: Callable[[float, torch.Tensor], bool] | None = None,
    save: bool = False,
    check_every: int = 1,
    callback: Callable[[int, float, torch.Tensor], None] | None = None,
) -> Solution:
    """Integrate ``dy/dt = f(t, y)`` over the fixed time grid ``ts``.

    Parameters
    ----------
    f : callable ``f(t, y) -> dy/dt``
    y0 : tensor
        Initial state at ``ts[0]``.
    ts : 1-D tensor or sequence, increasing
        Time grid; one solver step per interval.
    solver : Solver
    terminate : callable ``(t, y) -> bool``, optional
        Stop early (status ``TERMINATED``) as soon as it returns ``True``;
        checked every ``check_every`` steps. If given and it never fires, the
        status is ``MAX_STEPS``.
    save : bool
        Keep every state on the grid (``Solution.ys``).
    callback : callable ``(step, t, y)``, optional
        Called after every step (progress bars, logging).

    Returns
    -------
    Solution
    """
    if not isinstance(solver, Solver):
        raise UserTypeError(f"solver must be a flowlearn.solvers.Solver, got {type(solver).__name__}")
    ts = torch.as_tensor(ts, dtype=torch.float64).reshape(-1)
    if ts.numel() < 2:
        raise UserInputError(f"ts must hold at least 2 times, got {ts.numel()}")
    if not bool((ts[1:] > ts[:-1]).all()):
        raise UserInputError("ts must be strictly increasing")
    check_finite("y0", y0)
    check_every = check_int("check_every", check_every, minimum=1)
    times = ts.tolist()
    y = y0
    saved = [y0] if save else None
    status = Status.SUCCESS if terminate is None else Status.MAX_STEPS
    n = 0
    for n in range(1, len(times)):
        t, h = times[n - 1], times[n] - times[n - 1]
        y = solver.step(f, t, y, h)
        if save:
            saved.append(y)
        if callback is not None:
            callback(n, times[n], y)
        if not bool(torch.isfinite(y).all()):
            status = Status.NONFINITE
            break
        if terminate is not None and n % check_every == 0 and terminate(times[n], y):
            status = Status.TERMINATED
            break
    stats = {"steps": n, "nfev": n * solver.stages}
    return Solution(
        t=times[n], y=y, status=status, stats=stats,
        ts=ts[: n + 1] if save else None,
        ys=torch.stack(saved) if save else None,
    )
