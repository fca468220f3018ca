r"""Naive mean-field baseline (paper 001, Sect. 4 and 5).

A factorised distribution :math:`T(q)`, :math:`q \in \mathcal{W}`, has
:math:`\mathrm{KL}[T(q) : P^*] = \langle q, \log q\rangle + \langle T(q), E\rangle + \log Z^*` (eqs. (16), (17))
with the mean-field energy of :meth:`PairwiseModel.mean_field_energy`.  Two minimisers, run from many
random restarts at once with best-of selection: ``"adam"`` on the logits :math:`V` of
:math:`q = \mathrm{softmax}(V)`, :math:`V_0 \sim N(0, I)` (the paper's procedure), and ``"coordinate"``
ascent :math:`q_i \leftarrow \mathrm{softmax}(-\partial_{q_i}\langle T(q), E\rangle)` over one colour class
of non-adjacent nodes at a time (exact minimisers over :math:`q_i`: the free energy never increases).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .._checks import check_choice, check_int, check_positive
from ..geometry import entropy as row_entropy
from .models import PairwiseModel

__all__ = ["MeanField", "MeanFieldResult", "expected_local_energies", "mean_field_free_energy"]


def expected_local_energies(model: PairwiseModel, q: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial \langle T(q), E\rangle / \partial q_{i,a} = \theta^i[a] + \sum_{j\sim i}(\theta^{ij} q_j)[a]`,
    shape (..., n, c) like ``q``."""
    out = model.unary.to(q.dtype).expand_as(q).clone()
    if model.num_edges == 0:
        return out
    src, dst = model.edges[:, 0], model.edges[:, 1]
    pw = model.pairwise.to(q.dtype)
    to_src = torch.einsum("eab,...eb->...ea", pw, q[..., dst, :])
    to_dst = torch.einsum("eab,...ea->...eb", pw, q[..., src, :])
    out.index_add_(-2, src, to_src)
    out.index_add_(-2, dst, to_dst)
    return out


def mean_field_free_energy(model: PairwiseModel, q: torch.Tensor) -> torch.Tensor:
    r"""Free energy :math:`F(q) = \langle T(q), E\rangle - \sum_i H(q_i)`, shape (...); KL = F + log Z*."""
    return model.mean_field_energy(q) - row_entropy(q).sum(-1)


@dataclass
class MeanFieldResult:
    """Best factorised approximation found: ``marginals`` :math:`q` (n, c), its ``free_energy`` :math:`F(q)`,
    ``energy`` :math:`\\langle T(q), E\\rangle`, ``entropy`` :math:`\\sum_i H(q_i)` and ``kl``
    :math:`F(q) + \\log Z^*` (None unless ``log_z`` was given to :meth:`MeanField.fit`)."""

    marginals: torch.Tensor
    free_energy: float
    energy: float
    entropy: float
    kl: float | None
    restart_free_energies: torch.Tensor
    best_restart: int
    iterations: int
    seconds: float
    method: str


class MeanField:
    """Mean-field approximation by many random restarts.

    ``num_restarts`` random initialisations :math:`V_0 \\sim N(0, I)` (paper: 1000), each run for ``iterations``
    Adam steps (step length ``lr``) or coordinate-ascent sweeps (``method``).
    """

    def __init__(self, num_restarts: int = 1000, *, method: str = "adam", iterations: int = 1000,
                 lr: float = 0.05, seed: int = 0):
        self.num_restarts = check_int("num_restarts", num_restarts, minimum=1)
        check_choice("method", method, ("adam", "coordinate"))
        self.method = method
        self.iterations = check_int("iterations", iterations, minimum=1)
        self.lr = check_positive("lr", lr)
        self.seed = check_int("seed", seed, minimum=0)

    def fit(self, model: PairwiseModel, *, log_z: float | None = None) -> MeanFieldResult:
        """Run all restarts and select the one of least free energy."""
        t0 = time.perf_counter()
        gen = torch.Generator(device=model.device).manual_seed(self.seed)
        logits = torch.randn(self.num_restarts, model.num_nodes, model.num_labels, generator=gen,
                             dtype=model.dtype, device=model.device)
        q = (self._adam if self.method == "adam" else self._coordinate)(model, logits)
        with torch.no_grad():
            free = mean_field_free_energy(model, q)
            best = int(torch.argmin(free))
            qb = q[best]
            energy, ent = float(model.mean_field_energy(qb)), float(row_entropy(qb).sum())
        return MeanFieldResult(marginals=qb, free_energy=float(free[best]), energy=energy, entropy=ent,
                               kl=None if log_z is None else float(free[best]) + float(log_z),
                               restart_free_energies=free, best_restart=best, iterations=self.iterations,
                               seconds=time.perf_counter() - t0, method=self.method)

    def _adam(self, model: PairwiseModel, logits: torch.Tensor) -> torch.Tensor:
        v = logits.clone().requires_grad_(True)
        opt = torch.optim.Adam([v], lr=self.lr)
        for _ in range(self.iterations):
            opt.zero_grad(set_to_none=True)
            mean_field_free_energy(model, torch.softmax(v, -1)).sum().backward()
            opt.step()
        return torch.softmax(v.detach(), -1)

    def _coordinate(self, model: PairwiseModel, logits: torch.Tensor) -> torch.Tensor:
        q = torch.softmax(logits, -1)
        groups = model.node_coloring()
        with torch.no_grad():
            for _ in range(self.iterations):
                for nodes in groups:
                    field = expected_local_energies(model, q)
                    q[:, nodes] = torch.softmax(-field[:, nodes], -1)
        return q
