r"""Barzilai--Borwein gradient steps with a safeguarded (nonmonotone Armijo) line search, per sample.

A cheaper alternative to :class:`~flowlearn.solvers.amd.AMD` for the same job (explicit Euler steps
:math:`z_{n+1} = z_n - \delta t_n \nabla l(z_n)` on a per-sample loss) that picks the step from curvature:

* **trial step** (Barzilai & Borwein 1988): with :math:`s = z_{n} - z_{n-1}` and
  :math:`y = \nabla l(z_{n}) - \nabla l(z_{n-1})`, :math:`a_n = s^\top s / s^\top y` (``"bb1"``),
  :math:`s^\top y / y^\top y` (``"bb2"``) or the two alternating (``"alternate"``), clipped to
  ``[smin, smax]``; where :math:`s^\top y \le 0` the last step doubled; the first trial step is ``s0``.
* **safeguard** (Grippo--Lampariello--Lucidi; Raydan 1997): accept
  :math:`l(z_n - a \nabla l) \le \max_{0\le j<M} l(z_{n-j}) - c_1 a \|\nabla l\|^2` over the last
  ``memory = M`` accepted iterates (``memory=1``: monotone Armijo).
* **backtracking by quadratic interpolation**: a rejected :math:`a` is replaced by the minimiser of the
  parabola through :math:`l(z)`, :math:`-\|\nabla l\|^2` and :math:`l(z - a\nabla l)`, kept in ``[0.1 a, 0.5 a]``;
  every trial is evaluated with its gradient (one evaluation per accepted step).

The returned code is the *best* iterate (never worse than :math:`z_0`); ``step_sizes`` and ``states`` are
cut there, so that replaying them (:class:`flowlearn.encoding.adjoint.AMDReplay`) reproduces it.  Stopping
rules are AMD's, without a final time ``tau``.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass

import torch

from .._checks import UserInputError, check_choice
from .amd import (_CODES, AMDResult, AMDStatus, LossFn, _check_start, _finite, _mask, _stop, _summary,
                  _value_and_grad)
from .base import _set_checked

__all__ = ["BB", "BB_VARIANTS", "BBResult"]

BB_VARIANTS = ("bb1", "bb2", "alternate")


class BBResult(AMDResult):
    """Result of :meth:`BB.minimize`, an :class:`~flowlearn.solvers.amd.AMDResult` for the best iterate;
    ``loss_evals`` is zero, ``loss_history`` holds the current iterate's loss (it may rise if ``memory > 1``)."""


@dataclass(frozen=True)
class BB:
    r"""Barzilai--Borwein steps with a nonmonotone Armijo safeguard, per sample (see module docstring).

    Parameters
    ----------
    s0, smin, smax : float, 0 < smin <= smax
        First trial step (AMD's :math:`s_0`); bounds of the Barzilai--Borwein step.
    memory, c1 : int >= 1, float in [0, 1)
        Nonmonotone window :math:`M` (1: monotone Armijo); sufficient-decrease constant of the Armijo condition.
    variant : {"bb1", "bb2", "alternate"}
        Which Barzilai--Borwein quotient (``"bb2"``, the shorter, needed the fewest evaluations on digits
        and MNIST decoders).
    max_steps, max_backtracks : int
        Iteration budget; rejected trials per iteration before a sample is declared ``STALLED``.
    patience, flat_rtol, gtol
        As for :class:`~flowlearn.solvers.amd.AMD`, on the best loss.
    """

    s0: float = 1.0
    smin: float = 1e-6
    smax: float = 1e4
    _: KW_ONLY
    memory: int = 5
    c1: float = 1e-4
    variant: str = "bb2"
    max_steps: int = 200
    max_backtracks: int = 20
    patience: int = 5
    flat_rtol: float = 1e-3
    gtol: float = 0.0

    def __post_init__(self):
        _set_checked(self, positive=("s0", "smin", "smax"), nonnegative=("c1", "flat_rtol", "gtol"),
                     ints={"memory": 1, "max_steps": 1, "max_backtracks": 0, "patience": 1})
        if self.smax < self.smin:
            raise UserInputError(f"smax must be >= smin={self.smin}, got {self.smax!r}")
        if not self.c1 < 1.0:
            raise UserInputError(f"c1 must lie in [0, 1), got {self.c1!r}")
        check_choice("variant", self.variant, BB_VARIANTS)

    def _bb_step(self, it: int, sy, ss, yy, last):
        """Next trial step per row from :math:`s^\\top y`, :math:`s^\\top s`, :math:`y^\\top y` and the last step."""
        use_bb2 = self.variant == "bb2" or (self.variant == "alternate" and it % 2 == 0)
        tiny = torch.finfo(sy.dtype).tiny
        step = sy / yy.clamp(min=tiny) if use_bb2 else ss / sy.clamp(min=tiny)
        step = torch.where(sy > 0, step, 2.0 * last)
        return step.clamp(min=self.smin, max=self.smax)

    def minimize(self, loss_fn: LossFn, z0: torch.Tensor, *, indexed: bool = False,
                 record_states: bool = False) -> BBResult:
        """Minimise ``loss_fn`` independently for every row of ``z0`` (arguments as for :meth:`AMD.minimize`)."""
        _check_start(z0)
        B, device, dtype = z0.shape[0], z0.device, z0.dtype
        z = z0.detach().clone()
        loss, grad = _value_and_grad(loss_fn, indexed, z, z, torch.arange(B, device=device))
        long = {"dtype": torch.long, "device": device}
        grad_evals, steps, best_iter = torch.ones(B, **long), torch.zeros(B, **long), torch.zeros(B, **long)
        alpha = torch.full((B,), self.s0, dtype=dtype, device=device)
        code = torch.full((B,), -1, **long)
        active = _finite(loss, grad)
        code[~active] = _CODES.index(AMDStatus.NONFINITE)
        best_z, best_loss = z.clone(), loss.clone()
        M, P = self.memory, self.patience + 1
        window = torch.full((B, M), -math.inf, dtype=dtype, device=device)   # ring: last M accepted losses
        window[:, 0] = loss
        recent = torch.full((B, P), math.nan, dtype=dtype, device=device)    # ring: best loss, last P steps
        recent[:, 0] = loss
        nan = torch.full_like(loss, math.nan)
        history = [torch.where(active, loss, nan)]
        step_log: list[torch.Tensor] = []
        states = [z.clone()] if record_states else None
        iterations = 0
        while iterations < self.max_steps:
            rows = active.nonzero().flatten()
            if rows.numel() == 0:
                break
            gr = grad.index_select(0, rows)
            gg = gr.reshape(len(rows), -1).pow(2).sum(1)
            conv = gg <= self.gtol ** 2
            if bool(conv.any()):
                _stop(code, active, _mask(B, rows[conv], device), AMDStatus.CONVERGED)
                rows, gr, gg = rows[~conv], gr[~conv], gg[~conv]
                if rows.numel() == 0:
                    break
            iterations += 1
            zr = z.index_select(0, rows)
            delta, new_z, new_loss, new_grad, failed = self._line_search(
                loss_fn, indexed, z, zr, gr, gg, loss.index_select(0, rows), alpha.index_select(0, rows),
                window.index_select(0, rows).max(1).values, rows, grad_evals)
            if failed.numel():
                _stop(code, active, _mask(B, rows[failed], device), AMDStatus.STALLED)
            moved = delta > 0
            if not bool(moved.all()):
                rows, gr, gg, delta = rows[moved], gr[moved], gg[moved], delta[moved]
                new_z, new_loss, new_grad = new_z[moved], new_loss[moved], new_grad[moved]
            step_log.append(torch.zeros(B, dtype=dtype, device=device).index_copy(0, rows, delta))
            history_row = torch.where(active, loss, nan)
            if rows.numel():
                # s = -delta g, y = g_new - g:  s.y = -delta g.y,  s.s = delta^2 g.g
                yv = (new_grad - gr).reshape(len(rows), -1)
                sy = -delta * (gr.reshape(len(rows), -1) * yv).sum(1)
                alpha[rows] = self._bb_step(iterations, sy, delta * delta * gg, yv.pow(2).sum(1), delta)
                z = z.index_copy(0, rows, new_z)
                grad = grad.index_copy(0, rows, new_grad)
                loss = loss.index_copy(0, rows, new_loss)
                steps[rows] += 1
                n = steps[rows]
                window[rows, n % M] = new_loss
                better = new_loss < best_loss[rows]
                best_loss[rows] = torch.where(better, new_loss, best_loss[rows])
                best_z[rows] = torch.where(better.reshape((-1,) + (1,) * (z.ndim - 1)), new_z, best_z[rows])
                best_iter[rows] = torch.where(better, iterations, best_iter[rows])
                recent[rows, n % P] = best_loss[rows]
                history_row[rows] = new_loss
                if self.flat_rtol > 0:
                    past = recent[rows, (n - self.patience) % P]
                    flat = (n >= self.patience) & (past - best_loss[rows] <= self.flat_rtol * past.abs())
                    _stop(code, active, _mask(B, rows[flat], device), AMDStatus.FLAT)
            if record_states:
                states.append(z.clone())
            history.append(history_row)
        _stop(code, active, active.clone(), AMDStatus.MAX_STEPS)
        loss_evals = torch.zeros(B, **long)
        status, stats = _summary(code, iterations, loss_evals, grad_evals)
        # step sizes and states are cut at each sample's best iterate
        step_sizes = torch.stack(step_log) if step_log else torch.zeros(0, B, dtype=dtype, device=device)
        after_best = torch.arange(step_sizes.shape[0] + 1, device=device)[:, None] >= best_iter[None, :]
        step_sizes = torch.where(after_best[:-1], torch.zeros_like(step_sizes), step_sizes)
        if states is not None:
            mask = after_best.reshape(after_best.shape + (1,) * (z0.ndim - 1))
            states = torch.where(mask, best_z.unsqueeze(0), torch.stack(states))
        return BBResult(z=best_z, loss=best_loss, status=status, steps=steps, loss_evals=loss_evals,
                        grad_evals=grad_evals, time=step_sizes.sum(0), step_sizes=step_sizes,
                        loss_history=torch.stack(history), states=states, stats=stats)

    def _line_search(self, loss_fn, indexed, z, zr, gr, gg, fr, a0, ref, rows, grad_evals):
        """Nonmonotone Armijo search along ``-gr`` from the rows ``zr``; returns ``(delta, new_z, new_loss,
        new_grad, failed)``: step per row (0 where none), accepted trial, its loss and gradient, failed positions."""
        bshape = (-1,) + (1,) * (zr.ndim - 1)
        trial = zr - a0.reshape(bshape) * gr
        f_t, g_t = _value_and_grad(loss_fn, indexed, z, trial, rows)
        grad_evals[rows] += 1
        ok = _finite(f_t, g_t) & (f_t <= ref - self.c1 * a0 * gg)
        if bool(ok.all()):                                    # the common case: the BB step is accepted
            return a0, trial, f_t, g_t, ok.nonzero().flatten()[:0]
        delta = torch.where(ok, a0, torch.zeros_like(a0))
        new_z, new_loss, new_grad = trial, f_t, g_t
        search = (~ok).nonzero().flatten()
        a, fa = a0[search], f_t[search]
        ok_val = _finite(fa, g_t[search])
        for _ in range(self.max_backtracks):
            # minimiser of the parabola through l(z), l'(0) = -|g|^2 and l(z - a g), kept in [0.1 a, 0.5 a]
            gs = gg[search]
            curv = 2.0 * (fa - fr[search] + a * gs)
            interp = torch.where(ok_val & (curv > 0), gs * a * a / curv.clamp(min=torch.finfo(a.dtype).tiny), 0.1 * a)
            a = torch.minimum(torch.maximum(interp, 0.1 * a), 0.5 * a)
            sr = rows[search]
            trial = zr[search] - a.reshape(bshape) * gr[search]
            fa, g_t = _value_and_grad(loss_fn, indexed, z, trial, sr)
            grad_evals[sr] += 1
            ok_val = _finite(fa, g_t)
            ok = ok_val & (fa <= ref[search] - self.c1 * a * gs)
            acc = search[ok]
            delta[acc], new_z[acc], new_loss[acc], new_grad[acc] = a[ok], trial[ok], fa[ok], g_t[ok]
            search, a, fa, ok_val = search[~ok], a[~ok], fa[~ok], ok_val[~ok]
            if search.numel() == 0:
                break
        return delta, new_z, new_loss, new_grad, search
