"""``GradientFlowEncoder``: decoder-only autoencoding by integrating the gradient flow (paper 002)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from .._checks import UserInputError, UserTypeError, check_choice, check_finite, check_int, check_unit_interval
from ..solvers import AMD, BB, RK4, Euler, FixedGrid, Nesterov, integrate
from ..solvers.base import Status
from .adjoint import ADJOINTS, AMDReplay, FixedGridReplay, adjoint_final_state, unrolled_final_state
from .flows import GradientFlowField, NesterovField
from .losses import loss_name, resolve_loss

__all__ = ["SOLVERS", "EncodeResult", "GradientFlowEncoder", "TrainingLoss", "solver_from_name"]

SOLVERS = ("amd", "bb", "euler", "rk4", "nesterov")
DEFAULT_T1 = {"amd": 1000.0, "bb": 1000.0, "euler": 1000.0, "rk4": 1000.0, "nesterov": 100.0}
_MINIMIZERS = {"amd": AMD, "bb": BB}   # per-sample loss minimisers: solver objects accepted by ``solver=``
_STRATEGIES = (AMD, BB, FixedGrid, Nesterov)


@dataclass
class EncodeResult:
    """Codes and per-sample statistics of one encoding.

    Attributes
    ----------
    z, loss : tensors (B, latent_dim), detached, and (B,)
        The codes and :math:`l(y_b, D(z_b))` there.
    steps, decoder_evals : long tensors (B,)
        Accepted solver steps; decoder forward passes spent on the sample (a gradient evaluation counts
        one, with its backward pass; a backtracking trial one).
    time : tensor (B,)
        Integration time reached (AMD/BB: the sample's own :math:`\\tau'`, the sum of its steps).
    status : list of str, length B
        AMD/BB: the :class:`~flowlearn.solvers.amd.AMDStatus` value; fixed grids: ``"success"``, ``"nonfinite"``, or
        ``"interrupted"`` (another row became non-finite).  ``stats``: solver name and batch totals.
    """

    z: torch.Tensor
    loss: torch.Tensor
    steps: torch.Tensor
    decoder_evals: torch.Tensor
    time: torch.Tensor
    status: list[str]
    stats: dict = field(default_factory=dict)


@dataclass
class TrainingLoss:
    """Decoder training objective of one batch: ``loss`` :math:`\\frac1B\\sum_b l(y_b, D(z_b^*))`, whose
    ``backward()`` gives the gradient of the chosen ``adjoint``; ``per_sample`` (B,), detached; ``encoding``."""

    loss: torch.Tensor
    per_sample: torch.Tensor
    encoding: EncodeResult


def solver_from_name(name: str, *, t1: Optional[float] = None, steps: Optional[int] = None,
                     grid: Optional[str] = None, alpha_decay: Optional[bool] = None,
                     nesterov_eps: Optional[float] = None, amd: Optional[AMD] = None, bb: Optional[BB] = None):
    """The solver object that a name and its shortcut settings stand for: ``"amd"`` -> ``amd or AMD()``,
    ``"bb"`` -> ``bb or BB()``, ``"euler"``/``"rk4"`` -> ``FixedGrid(Euler()/RK4(), t1, steps, grid, alpha_decay)``,
    ``"nesterov"`` -> ``Nesterov(FixedGrid(RK4(), t1, steps, grid), nesterov_eps)`` (``t1`` from ``DEFAULT_T1``)."""
    check_choice("solver", name, SOLVERS)
    grid_kw = {"t1": t1, "steps": steps, "spacing": grid, "alpha_decay": alpha_decay}
    given = sorted(k for k, v in {**grid_kw, "nesterov_eps": nesterov_eps}.items() if v is not None)
    if name in _MINIMIZERS:
        if given:
            raise UserInputError(f"{', '.join(given)} set the fixed-grid solvers, not solver={name!r}; "
                                 f"configure {_MINIMIZERS[name].__name__}(...) instead")
        return (amd if name == "amd" else bb) or _MINIMIZERS[name]()
    grid_kw = {k: v for k, v in grid_kw.items() if v is not None}
    grid_kw.setdefault("t1", DEFAULT_T1[name])
    if name == "nesterov":
        if grid_kw.get("alpha_decay"):
            raise UserInputError("alpha_decay applies to the euler/rk4 gradient flows only, got solver='nesterov'")
        return Nesterov(FixedGrid(RK4(), **grid_kw), **({} if nesterov_eps is None else {"eps": nesterov_eps}))
    if nesterov_eps is not None:
        raise UserInputError(f"nesterov_eps sets solver='nesterov', not solver={name!r}")
    return FixedGrid(Euler() if name == "euler" else RK4(), **grid_kw)


def check_minimizers(amd, bb) -> None:
    """Refuse an ``amd`` that is not an :class:`AMD` or a ``bb`` that is not a :class:`BB` (``None`` passes)."""
    for kind, obj in (("amd", amd), ("bb", bb)):
        if obj is not None and not isinstance(obj, _MINIMIZERS[kind]):
            raise UserTypeError(f"{kind} must be a flowlearn.solvers.{kind}.{_MINIMIZERS[kind].__name__}, "
                                f"got {type(obj).__name__}")


class GradientFlowEncoder(nn.Module):
    r"""Encode by gradient flow through a decoder; train the decoder with a chosen adjoint.

    The code of a sample ``y`` is :math:`z^* = z(\tau)` for :math:`\dot z = -\alpha(t)\nabla_z l(y, D(z))`,
    :math:`z(0) = 0` (eqs. 1--2); the decoder is trained on
    :math:`L(\theta) = \frac1B\sum_b l(y_b, D(z_b^*, \theta))` (eq. 3) with the gradient of ``adjoint``.

    Parameters
    ----------
    decoder : nn.Module
        Maps codes (B, latent_dim) to reconstructions with ``y``'s number of entries per sample;
        for ``loss="bce"`` its outputs must be probabilities. Rows must not interact.
    latent_dim : int
    loss : {"bce", "mse", "gaussian"} or callable
        Per-sample loss ``loss(recon, target) -> (B,)``, mean over pixels: a name, a
        :mod:`flowlearn.encoding.losses` object (``BCE()``, ``MSE()``, ``GaussianNLL(sigma)``,
        ``Masked(base, mask)``) or any callable with that signature whose rows are independent.
    solver : AMD, BB, FixedGrid, Nesterov or {"amd", "bb", "euler", "rk4", "nesterov"}
        A solver object of :mod:`flowlearn.solvers`, used as configured: ``AMD()`` (the paper's, eqs. 6--7),
        ``BB()`` (Barzilai--Borwein steps, a fraction of AMD's decoder evaluations), ``FixedGrid(RK4(),
        t1=1000, steps=60, spacing="log")`` (the flow (1) on a fixed grid) or ``Nesterov(...)`` (the flow (5)).
        A name stands for the default object (:func:`solver_from_name`); the shortcuts below adjust it.
    adjoint : {"approx", "full", "unrolled"}
        Training gradient (eqs. 11--12, eqs. 8--10 solved discretely, or backprop through the solver).
    t1, steps, grid, alpha_decay, nesterov_eps, amd, bb : optional shortcuts for a named solver
        (``FixedGrid``'s ``t1``, ``steps``, ``spacing``, ``alpha_decay``; ``Nesterov``'s ``eps``; the object
        that ``solver="amd"`` / ``"bb"`` stands for).
    """

    def __init__(self, decoder: nn.Module, latent_dim: int, *, loss="bce", solver="amd",
                 adjoint: str = "approx", t1: Optional[float] = None, steps: Optional[int] = None,
                 grid: Optional[str] = None, alpha_decay: Optional[bool] = None,
                 nesterov_eps: Optional[float] = None, amd: Optional[AMD] = None, bb: Optional[BB] = None):
        super().__init__()
        if not isinstance(decoder, nn.Module):
            raise UserTypeError(f"decoder must be a torch.nn.Module, got {type(decoder).__name__}")
        self.loss_fn = resolve_loss(loss)
        check_minimizers(amd, bb)
        shortcuts = {"t1": t1, "steps": steps, "grid": grid, "alpha_decay": alpha_decay,
                     "nesterov_eps": nesterov_eps}
        if isinstance(solver, _STRATEGIES):
            given = sorted(k for k, v in shortcuts.items() if v is not None)
            if given:
                raise UserInputError(f"{', '.join(given)} must be set inside the solver object, got "
                                     f"solver={solver!r} with {given[0]}={shortcuts[given[0]]!r}")
            strategy = solver
        elif isinstance(solver, str):
            strategy = solver_from_name(solver, amd=amd, bb=bb, **shortcuts)
        else:
            raise UserTypeError(f"solver must be one of {SOLVERS} or a solver object (AMD, BB, FixedGrid, "
                                f"Nesterov), got {type(solver).__name__}")
        check_choice("adjoint", adjoint, ADJOINTS)
        self.decoder, self.strategy, self.adjoint = decoder, strategy, adjoint
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.loss_kind = loss_name(loss)
        self.solver = {AMD: "amd", BB: "bb", Nesterov: "nesterov"}.get(type(strategy)) or strategy.name

    @property
    def minimizer(self):
        """The per-sample minimiser (AMD or BB), ``None`` for the fixed-grid flows."""
        return self.strategy if isinstance(self.strategy, (AMD, BB)) else None

    @property
    def fixed_grid(self) -> Optional[FixedGrid]:
        """The :class:`~flowlearn.solvers.FixedGrid` of a fixed-grid or Nesterov solver, else ``None``."""
        if isinstance(self.strategy, Nesterov):
            return self.strategy.grid
        return self.strategy if isinstance(self.strategy, FixedGrid) else None

    @property
    def amd(self) -> AMD:
        """The AMD solver: the strategy itself, or paper settings ``AMD()`` (used for Mixed/refined codes)."""
        return self.strategy if isinstance(self.strategy, AMD) else AMD()

    def extra_repr(self) -> str:
        return (f"latent_dim={self.latent_dim}, loss={self.loss_kind!r}, solver={self.strategy!r}, "
                f"adjoint={self.adjoint!r}")

    def _check_batch(self, y) -> torch.Tensor:
        if not isinstance(y, torch.Tensor) or not y.is_floating_point() or y.ndim < 2:
            got = f"dtype {y.dtype} and shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise UserTypeError(f"y must be a floating tensor of shape (B, ...) with B >= 1, got {got}")
        check_finite("y", y)
        if y.shape[0] == 0:
            raise UserInputError("y must hold at least one sample, got shape " + str(tuple(y.shape)))
        if getattr(self.loss_fn, "needs_unit_interval", False):
            check_unit_interval("y", y, hint="the BCE loss compares pixels with probabilities: scale the data "
                                             "to [0, 1] (e.g. divide 0..255 images by 255) or use loss='mse'")
        param = next(self.decoder.parameters(), None)
        if param is not None and (param.dtype != y.dtype or param.device != y.device):
            raise UserInputError(f"y must have the decoder's dtype and device ({param.dtype}, {param.device}), got "
                             f"({y.dtype}, {y.device}); convert one of them, e.g. y.to(torch.{str(param.dtype)[6:]})")
        return y

    def _field(self, y, create_graph: bool):
        if isinstance(self.strategy, Nesterov):
            return NesterovField(self.decoder, y, self.loss_fn, self.strategy.eps, create_graph=create_graph)
        grid = self.fixed_grid
        tau = grid.t1 if grid is not None and grid.alpha_decay else None
        return GradientFlowField(self.decoder, y, self.loss_fn, tau, create_graph=create_graph)

    def _encode_fixed(self, y, z0, record_states: bool):
        flow = self._field(y, create_graph=False)
        sol = integrate(flow, flow.initial_state(z0), self.fixed_grid.times(), self.fixed_grid.method,
                        save=record_states)
        z = flow.latent(sol.y).detach()
        B = y.shape[0]
        finite = torch.isfinite(z.reshape(B, -1)).all(1)
        failed = sol.status is Status.NONFINITE
        status = [("interrupted" if ok else "nonfinite") if failed else "success" for ok in finite.tolist()]
        with torch.no_grad():
            loss = self.loss_fn(self.decoder(torch.where(finite[:, None], z, torch.zeros_like(z))), y)
        loss = torch.where(finite, loss, torch.full_like(loss, float("nan")))
        long = dict(dtype=torch.long, device=y.device)
        result = EncodeResult(
            z=z, loss=loss, steps=torch.full((B,), sol.stats["steps"], **long),
            decoder_evals=torch.full((B,), flow.gradient.evaluations + 1, **long),
            time=torch.full((B,), sol.t, dtype=z.dtype, device=z.device), status=status,
            stats={"solver": self.solver, "grid": self.fixed_grid.spacing, "nfev": sol.stats["nfev"],
                   "status": sol.status.value})
        return result, (None, sol.ys)

    def _encode_minimizer(self, y, z0, record_states: bool):
        flow = GradientFlowField(self.decoder, y, self.loss_fn)
        out = self.minimizer.minimize(lambda z, rows: flow.gradient.losses(z, rows), z0, indexed=True,
                                      record_states=record_states)
        result = EncodeResult(z=out.z, loss=out.loss, steps=out.steps, decoder_evals=out.grad_evals + out.loss_evals,
                              time=out.time, status=[s.value for s in out.status],
                              stats={"solver": self.solver, **out.stats})
        return result, (out.step_sizes, out.states)

    def _initial(self, y, z0):
        if z0 is None:
            return torch.zeros(y.shape[0], self.latent_dim, dtype=y.dtype, device=y.device)
        if not isinstance(z0, torch.Tensor) or tuple(z0.shape) != (y.shape[0], self.latent_dim):
            raise UserInputError(f"z0 must be a tensor of shape ({y.shape[0]}, {self.latent_dim}), got "
                                 + (str(tuple(z0.shape)) if isinstance(z0, torch.Tensor) else type(z0).__name__))
        check_finite("z0", z0)
        return z0.detach().to(dtype=y.dtype, device=y.device)

    def _encode(self, y, record_states: bool = False, z0=None):
        y = self._check_batch(y)
        z0 = self._initial(y, z0)
        if self.minimizer is not None:
            return self._encode_minimizer(y, z0, record_states)
        return self._encode_fixed(y, z0, record_states)

    def encode(self, y: torch.Tensor, z0: Optional[torch.Tensor] = None) -> EncodeResult:
        """Codes :math:`z^*` of the batch ``y`` (B, ...) and per-sample statistics (no gradient); ``z0``
        (B, latent_dim) starts the flow there instead of at 0 (e.g. an AE encoder's code, refined at test time)."""
        return self._encode(y, z0=z0)[0]

    def reconstruct(self, y: torch.Tensor) -> torch.Tensor:
        """:math:`D(z^*(y))`, detached, shape of the decoder's output."""
        with torch.no_grad():
            return self.decoder(self.encode(y).z)

    def _code_for_training(self, y, z0=None):
        """``(z*, EncodeResult)`` with ``z*`` carrying the gradient of ``self.adjoint``."""
        if self.adjoint == "approx":
            enc = self.encode(y, z0)
            return enc.z, enc
        enc, (step_sizes, states) = self._encode(y, record_states=self.adjoint == "full", z0=z0)
        flow = self._field(y, create_graph=True)
        if self.minimizer is not None:       # AMD and BB both take steps z <- z - dt_b grad l_b
            replay = AMDReplay(flow.gradient, step_sizes)
        else:
            replay = FixedGridReplay(flow, self.fixed_grid.method, self.fixed_grid.times())
        if self.adjoint == "unrolled":
            return flow.latent(unrolled_final_state(replay, flow.initial_state(self._initial(y, z0)))), enc
        return flow.latent(adjoint_final_state(replay, states, list(self.decoder.parameters()))), enc

    def training_loss(self, y: torch.Tensor, output_decoder: Optional[nn.Module] = None) -> TrainingLoss:
        """Decoder objective (3) for the batch ``y`` with the gradient of ``self.adjoint``; ``output_decoder``
        (e.g. a ``DistributedDataParallel`` wrapper of ``self.decoder``) makes the final reconstruction."""
        z, enc = self._code_for_training(y)
        per_sample = self.loss_fn((output_decoder or self.decoder)(z), y)
        return TrainingLoss(loss=per_sample.mean(), per_sample=per_sample.detach(), encoding=enc)

    def code(self, y: torch.Tensor, z0: Optional[torch.Tensor] = None) -> EncodeResult:
        """Like :meth:`encode`, but ``result.z`` carries the gradient of ``self.adjoint`` for the decoder's parameters
        (``"approx"``: none; ``"full"``: the discrete adjoint runs on ``backward``; ``"unrolled"``: backprop)."""
        z, enc = self._code_for_training(y, z0)
        enc.z = z
        return enc

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """The codes :math:`z^*` of ``y``, so that the encoder is a layer in user code: with gradients enabled
        they carry the gradient of ``self.adjoint`` (as :meth:`code`), so ``loss(decoder(gfe(y)), y).backward()``
        trains the decoder as :meth:`training_loss` does; under ``torch.no_grad()`` they come detached."""
        if not torch.is_grad_enabled():
            return self.encode(y).z
        return self._code_for_training(y)[0]
