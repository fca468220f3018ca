r"""Loopy belief propagation (Bethe), a baseline beyond the paper.

:class:`LoopyBP` -- damped parallel sum-product in the log domain.  Messages
:math:`\log m_{s\to t}(x_t) = \operatorname{logsumexp}_{x_s}\big(-\theta^s(x_s) - \theta^{st}(x_s, x_t)
+ \sum_{k\in N(s)\setminus t}\log m_{k\to s}(x_s)\big)`, normalised.  The Bethe free energy
:math:`F_B = U_B - H_B`, :math:`H_B = \sum_{e} H(b_e) - \sum_i (d_i - 1) H(b_i)` approximates
:math:`-\log Z^*` and is exact on trees (Wainwright & Jordan 2008, Sect. 4).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .._checks import UserInputError, check_int, check_positive
from ..geometry import entropy as row_entropy
from .models import PairwiseModel

__all__ = ["BeliefPropagationResult", "LoopyBP"]


@dataclass
class BeliefPropagationResult:
    """Fixed point of :class:`LoopyBP`: node beliefs ``marginals`` (n, c), edge beliefs ``pairwise_beliefs``
    (E, c, c), :math:`F_B` (``bethe_free_energy``, :math:`-F_B \\approx \\log Z^*`), :math:`U_B` (``energy``),
    :math:`H_B` (``entropy``) and ``residual``, the largest message change in the last iteration."""

    marginals: torch.Tensor
    pairwise_beliefs: torch.Tensor
    bethe_free_energy: float
    energy: float
    entropy: float
    converged: bool
    iterations: int
    residual: float
    seconds: float


class LoopyBP:
    """Damped parallel loopy belief propagation (sum-product, log domain): new message = (1 - damping) * update +
    damping * old, ``damping`` in [0, 1); stops when the largest change of a log message is below ``tol``."""

    def __init__(self, max_iterations: int = 1000, *, damping: float = 0.5, tol: float = 1e-10):
        self.max_iterations = check_int("max_iterations", max_iterations, minimum=1)
        self.damping = float(damping)
        if not 0.0 <= self.damping < 1.0:
            raise UserInputError(f"damping must lie in [0, 1), got {self.damping!r}")
        self.tol = check_positive("tol", tol)

    def fit(self, model: PairwiseModel) -> BeliefPropagationResult:
        r"""Beliefs and Bethe free energy :math:`F_B = U_B - H_B` of ``model``, from uniform messages."""
        t0 = time.perf_counter()
        n, c, E = model.num_nodes, model.num_labels, model.num_edges
        src, dst = model.edges[:, 0], model.edges[:, 1]
        # directed edges d = 0..E-1: src -> dst with table pw[e]; d = E..2E-1: dst -> src with pw[e]^T
        frm, to = torch.cat([src, dst]), torch.cat([dst, src])
        table = torch.cat([model.pairwise, model.pairwise.transpose(1, 2)])  # [x_from, x_to]
        reverse = torch.cat([torch.arange(E, 2 * E), torch.arange(E)]).to(model.device)
        log_m = torch.zeros(2 * E, c, dtype=model.dtype, device=model.device)
        residual, converged, it = float("inf"), False, 0
        for it in range(1, self.max_iterations + 1):
            incoming = torch.zeros(n, c, dtype=model.dtype, device=model.device).index_add_(0, to, log_m)
            cavity = -model.unary[frm] + incoming[frm] - log_m[reverse]  # (2E, c) over x_from
            new = torch.logsumexp(cavity[:, :, None] - table, dim=1)
            new = new - torch.logsumexp(new, -1, keepdim=True)
            new = (1 - self.damping) * new + self.damping * log_m
            new = new - torch.logsumexp(new, -1, keepdim=True)
            residual = float((new - log_m).abs().max()) if E else 0.0
            log_m = new
            if residual < self.tol:
                converged = True
                break
        incoming = torch.zeros(n, c, dtype=model.dtype, device=model.device).index_add_(0, to, log_m)
        node_logb = torch.log_softmax(-model.unary + incoming, -1)
        cav_src = -model.unary[src] + incoming[src] - log_m[E:]  # messages dst -> src removed
        cav_dst = -model.unary[dst] + incoming[dst] - log_m[:E]
        pair_log = cav_src[:, :, None] + cav_dst[:, None, :] - model.pairwise
        pair_logb = pair_log - torch.logsumexp(pair_log.reshape(E, c * c), -1)[:, None, None]
        b, bp = node_logb.exp(), pair_logb.exp()
        energy = float((b * model.unary).sum() + (bp * model.pairwise).sum())
        degree = torch.bincount(frm, minlength=n).to(model.dtype)
        h_pair = float(row_entropy(bp.reshape(E, c * c)).sum())
        entropy = h_pair - float(((degree - 1) * row_entropy(b)).sum())
        return BeliefPropagationResult(marginals=b, pairwise_beliefs=bp, bethe_free_energy=energy - entropy,
                                       energy=energy, entropy=entropy, converged=converged, iterations=it,
                                       residual=residual, seconds=time.perf_counter() - t0)
