r"""A held-out family of random-field Potts grids with exact statistics, for development and reporting.

Each member is drawn deterministically from an integer seed: a ``rows x cols`` grid
(``4 <= rows <= cols <= 16``, ``cols >= 6``), ``c`` labels (2 or 3), unary energies
:math:`\theta^i[a] = h\,g_{ia}` with :math:`g_{ia} \sim N(0, 1)` and a field scale :math:`h`, and a
Potts coupling ``w`` (pairwise energy ``w`` when neighbouring labels differ, :func:`~flowlearn.pgm.potts_grid`)
drawn below, near or above the critical coupling.  Rules are chosen on :data:`DEVELOPMENT_SEEDS` only;
reported figures come from :data:`REPORT_SEEDS`.

Critical coupling
-----------------
:func:`~flowlearn.pgm.potts_grid` has :math:`P^*(x) \propto \exp(-\sum_i \theta^i[x_i] - w \sum_{i\sim j}
[x_i \ne x_j])`, the ferromagnetic ``q``-state Potts model :math:`-\beta H = K \sum_{i\sim j}\delta(x_i, x_j)`
with :math:`K = w` up to a constant, whose square-lattice critical point (zero field) is

.. math::
    K_c = \log(1 + \sqrt{q})

(Potts 1952; Baxter 1973; Wu, Rev. Mod. Phys. 54, 235 (1982), eq. (2.8)): for ``q = 2``, :math:`K_c = 2
\beta_c J = \log(1 + \sqrt 2) \approx 0.8814` (Onsager 1944), for ``q = 3``, :math:`K_c \approx 1.0051`.  A
member's coupling is ``ratio * critical_coupling(c)`` with ``ratio`` drawn from :data:`REGIMES` (random fields
and finite size shift the true transition; the regime names the zero-field infinite-lattice side).

Exactness
---------
Every member has :math:`c^{\text{rows}} \le 2^{16}` and ``rows <= cols``, so the column transfer matrix
(:func:`~flowlearn.pgm.transfer_matrix_inference`) is feasible.  :func:`exact_statistics` adds the pairwise
marginals by reverse-mode differentiation of the float64 transfer-matrix :math:`\log Z^*(\theta)`:

.. math::
    P^*(x_i = a) = -\frac{\partial \log Z^*}{\partial \theta^i[a]}, \qquad
    P^*(x_i = a, x_j = b) = -\frac{\partial \log Z^*}{\partial \theta^{ij}[a, b]}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import UserInputError, check_int
from ..pgm.models import PairwiseModel, potts_grid
from ..pgm.transfer import MAX_COLUMN_STATES, _layout, _slice_energy, _swap

__all__ = ["DEVELOPMENT_SEEDS", "REGIMES", "REPORT_SEEDS", "ExactStatistics", "FamilySpec", "build_model",
           "critical_coupling", "exact_statistics", "family_model", "family_spec", "statistic_errors"]

#: Seeds on which rules and settings are chosen.
DEVELOPMENT_SEEDS = range(10)
#: Seeds of every reported figure.
REPORT_SEEDS = range(100, 110)
#: Coupling ratio ``w / critical_coupling(c)`` of each regime: uniform on these intervals.
REGIMES = {"below": (0.5, 0.8), "near": (0.9, 1.1), "above": (1.2, 1.5)}
#: Field scale h: uniform on this interval.
FIELD_SCALE = (0.05, 0.5)
MIN_SHORT, MIN_LONG, MAX_SIDE = 4, 6, 16


def critical_coupling(labels: int) -> float:
    r"""Critical Potts coupling :math:`w_c = \log(1 + \sqrt{c})` in the convention of
    :func:`~flowlearn.pgm.potts_grid`."""
    return math.log1p(math.sqrt(check_int("labels", labels, minimum=2)))


@dataclass(frozen=True)
class FamilySpec:
    """One member of the family: grid ``rows x cols`` (``rows <= cols``, the transfer-matrix slice width),
    ``labels`` c, ``regime`` ("below", "near" or "above" the critical coupling), ``coupling_ratio`` =
    ``coupling / critical_coupling(labels)``, Potts ``coupling`` w and ``field_scale`` h, all drawn from ``seed``.
    """

    seed: int
    rows: int
    cols: int
    labels: int
    regime: str
    coupling_ratio: float
    coupling: float
    field_scale: float

    @property
    def name(self) -> str:
        return f"s{self.seed}-{self.rows}x{self.cols}-c{self.labels}-{self.regime}"


def family_spec(seed: int) -> FamilySpec:
    """The member of seed ``seed``: regime cycles with ``seed % 3``, ``c = 2 + (seed // 3) % 2`` (so every
    (regime, c) pair occurs among ten consecutive seeds), sizes, ratio and field scale from
    ``numpy.random.default_rng(seed)``."""
    seed = check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    regime = ("below", "near", "above")[seed % 3]
    labels = 2 + (seed // 3) % 2
    max_short = min(MAX_SIDE, math.floor(math.log(MAX_COLUMN_STATES) / math.log(labels) + 1e-9))
    rows = int(rng.integers(MIN_SHORT, max_short + 1))
    cols = int(rng.integers(max(rows, MIN_LONG), MAX_SIDE + 1))
    ratio = float(rng.uniform(*REGIMES[regime]))
    field_scale = float(rng.uniform(*FIELD_SCALE))
    return FamilySpec(seed=seed, rows=rows, cols=cols, labels=labels, regime=regime, coupling_ratio=ratio,
                      coupling=ratio * critical_coupling(labels), field_scale=field_scale)


def build_model(spec: FamilySpec) -> PairwiseModel:
    """The float64 Potts grid of ``spec``; unaries ``field_scale * N(0, 1)`` seeded by ``spec.seed``."""
    gen = torch.Generator().manual_seed(spec.seed)
    unary = spec.field_scale * torch.randn(spec.rows, spec.cols, spec.labels, generator=gen, dtype=torch.float64)
    return potts_grid(unary, spec.coupling)


def family_model(seed: int) -> tuple[FamilySpec, PairwiseModel]:
    """``(spec, model)`` of seed ``seed`` (deterministic)."""
    spec = family_spec(seed)
    return spec, build_model(spec)


@dataclass
class ExactStatistics:
    r"""Exact statistics of a grid model.

    Attributes
    ----------
    log_z : float
    marginals : tensor (n, c), float64
        :math:`P^*(x_i = a)`.
    pairwise : tensor (E, c, c), float64
        :math:`P^*(x_i = a, x_j = b)` for the model's edges ``(i, j)``.
    agreement : tensor (E,), float64
        :math:`P^*(x_i = x_j)` (the nearest-neighbour correlation used here).
    mean_energy : float
        :math:`\langle P^*, E\rangle`.
    """

    log_z: float
    marginals: torch.Tensor
    pairwise: torch.Tensor
    agreement: torch.Tensor
    mean_energy: float


def _log_partition(model: PairwiseModel) -> torch.Tensor:
    """Forward transfer-matrix recursion of :mod:`flowlearn.pgm.transfer`, differentiable in the model's tables."""
    width, length, _, nodes, intra, inter = _layout(model)
    alpha = -_slice_energy(model.unary[nodes[0]], intra[0], width)
    for t in range(1, length):
        for p in range(width):
            alpha, _ = _swap(alpha, None, p, inter[t - 1][p])
        alpha = alpha - _slice_energy(model.unary[nodes[t]], intra[t], width)
    return torch.logsumexp(alpha.reshape(-1), 0)


def exact_statistics(model: PairwiseModel) -> ExactStatistics:
    """Exact node and edge marginals, :math:`P^*(x_i = x_j)` and mean energy of a grid model (module docstring).

    Raises
    ------
    UserInputError
        No ``grid_shape``, or :math:`c^{\\min(rows, cols)}` above :data:`~flowlearn.pgm.transfer.MAX_COLUMN_STATES`.
    """
    if model.grid_shape is None:
        raise UserInputError("exact_statistics needs a grid model (grid_shape set), got None")
    rows, cols = model.grid_shape
    if min(rows, cols) * math.log(model.num_labels) > math.log(MAX_COLUMN_STATES) + 1e-9:
        raise UserInputError(f"exact_statistics: {model.num_labels}**{min(rows, cols)} column states are above "
                             f"{MAX_COLUMN_STATES}")
    unary = model.unary.detach().to(torch.float64).clone().requires_grad_(True)
    pairwise = model.pairwise.detach().to(torch.float64).clone().requires_grad_(True)
    shadow = PairwiseModel(unary.detach(), model.edges, pairwise.detach(), grid_shape=model.grid_shape)
    shadow.unary, shadow.pairwise = unary, pairwise   # differentiable leaves, validated above
    log_z = _log_partition(shadow)
    g_unary, g_pair = torch.autograd.grad(log_z, (unary, pairwise))
    marg, pair = -g_unary, -g_pair
    energy = float((marg * unary.detach()).sum() + (pair * pairwise.detach()).sum())
    return ExactStatistics(log_z=float(log_z.detach()), marginals=marg, pairwise=pair,
                           agreement=pair.diagonal(dim1=1, dim2=2).sum(-1), mean_energy=energy)


def agreement_from_configs(model: PairwiseModel, configs: torch.Tensor) -> torch.Tensor:
    """Sample frequency of :math:`x_i = x_j` per edge, shape (E,), float64, from integer ``configs`` (B, n)."""
    same = configs[:, model.edges[:, 0]] == configs[:, model.edges[:, 1]]
    return same.double().mean(0)


def statistic_errors(exact: ExactStatistics, marginals: torch.Tensor, mean_energy: float,
                     agreement: torch.Tensor) -> dict:
    r"""The three errors of an approximation against ``exact``.

    ``marginal``: :math:`\frac{1}{nc}\sum_{i,a}|q_i(a) - P^*(x_i = a)|`; ``energy``:
    :math:`|\hat U - \langle P^*, E\rangle| / |\langle P^*, E\rangle|`; ``correlation``:
    :math:`\frac{1}{|E|}\sum_{(i,j)}|\hat P(x_i = x_j) - P^*(x_i = x_j)|`; and their signed versions
    ``energy_bias`` :math:`(\hat U - \langle P^*, E\rangle) / |\langle P^*, E\rangle|` (negative: too ordered)
    and ``agreement_bias`` :math:`\frac{1}{|E|}\sum_{(i,j)}(\hat P(x_i = x_j) - P^*(x_i = x_j))`.
    """
    agree = agreement.double().cpu() - exact.agreement.cpu()
    bias = (float(mean_energy) - exact.mean_energy) / abs(exact.mean_energy)
    return {"marginal": float((marginals.double().cpu() - exact.marginals.cpu()).abs().mean()),
            "energy": abs(bias), "correlation": float(agree.abs().mean()),
            "energy_bias": bias, "agreement_bias": float(agree.mean())}
