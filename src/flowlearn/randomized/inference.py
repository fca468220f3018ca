r"""Evaluation of approximate models against exact inference (paper 001, Table 1).

For a model given by integer samples (randomized flow, Gibbs sampler) the table reports the sample mean
``energy`` :math:`\overline{E}`, the plug-in ``entropy`` (19) with Miller--Madow correction (20), the ``kl``
:math:`-\hat H + \overline{E} + \log Z^*` (eq. (14)) and the ``marginal_difference``, the mean over nodes of
:math:`\tfrac12 \| q_i - p^*_i \|_1` (:math:`|q_i(0) - p^*_i(0)|` for ``c = 2``, the paper's quantity).  For a
factorised model (mean field) every quantity is exact.  Samples are processed in chunks; only their packed
configuration keys are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .._checks import UserInputError, check_int
from ..geometry import entropy as row_entropy
from ..pgm.entropy import config_keys, entropy_estimates_from_counts, unique_keys
from ..pgm.enumeration import ExactResult
from ..pgm.mean_field import mean_field_free_energy
from ..pgm.models import PairwiseModel
from .sampling import ROUNDINGS, integral_fraction
from .sflow import RandomizedAssignmentFlow

__all__ = ["Evaluation", "SampleAccumulator", "evaluate_factorized", "evaluate_flow", "evaluate_flow_roundings",
           "evaluate_samples", "marginal_difference"]


#: Least Good--Turing coverage :math:`1 - f_1/m` at which a sample's plug-in entropy is reported.
MIN_COVERAGE = 0.5


@dataclass
class Evaluation:
    r"""One row of the comparison table; ``support`` is the number of distinct sampled configurations (None, and
    ``num_samples`` 0, for closed-form rows).  ``entropy_saturated``: the sample was too small for its support
    (coverage below :data:`MIN_COVERAGE`), so the plug-in entropy only measures :math:`\log m`; ``entropy`` and
    ``kl`` are then NaN."""

    kl: float
    energy: float
    entropy: float
    marginal_difference: float
    marginals: torch.Tensor
    support: int | None
    num_samples: int
    seconds: float
    entropy_saturated: bool = False

    def row(self) -> dict:
        """The JSON table columns."""
        return {"kl": self.kl, "energy": self.energy, "entropy": self.entropy,
                "marginal_difference": self.marginal_difference}


def marginal_difference(q: torch.Tensor, p: torch.Tensor) -> float:
    r"""Mean over nodes of :math:`\tfrac12\|q_i - p_i\|_1` (= :math:`|q_i(0) - p_i(0)|` for c = 2)."""
    if q.shape != p.shape:
        raise UserInputError(f"marginals must have equal shapes, got {tuple(q.shape)} and {tuple(p.shape)}")
    return float(0.5 * (q - p.to(q)).abs().sum(-1).mean())


class SampleAccumulator:
    """Streaming statistics of integer samples: energy sum, marginal counts and exact configuration keys."""

    def __init__(self, model: PairwiseModel):
        self.model = model
        n, c = model.num_nodes, model.num_labels
        self._offsets = c * torch.arange(n, device=model.device, dtype=torch.long)
        self._parts: list[torch.Tensor] = []
        self.energy_sum = 0.0
        self.counts = torch.zeros(n, c, dtype=torch.float64, device=model.device)
        self.num_samples = 0

    def add(self, configs: torch.Tensor) -> None:
        """Accumulate a chunk of integer samples ``configs`` of shape ``(m, n)`` (validated by the model)."""
        configs = self.model.check_configs(configs)
        self.energy_sum += float(self.model._energy_unchecked(configs).double().sum())
        n, c = self.model.num_nodes, self.model.num_labels
        self.counts += torch.bincount((configs + self._offsets).reshape(-1), minlength=n * c).reshape(n, c).double()
        self.num_samples += configs.shape[0]
        self._parts.append(config_keys(configs, c))

    def evaluate(self, exact: ExactResult, *, bias_correction: bool = True, seconds: float = 0.0) -> Evaluation:
        r"""Table row of all samples added so far against ``exact`` (``seconds`` is stored as given); the
        entropy is Miller--Madow corrected if ``bias_correction``."""
        if self.num_samples == 0:
            raise UserInputError("no samples were added")
        counts = unique_keys(torch.cat(self._parts))[1]
        est = entropy_estimates_from_counts(counts)
        saturated = est.coverage < MIN_COVERAGE
        h = float("nan") if saturated else est.miller_madow if bias_correction else est.plugin
        energy = self.energy_sum / self.num_samples
        q = (self.counts / self.num_samples).to(self.model.dtype)
        return Evaluation(kl=-h + energy + exact.log_z, energy=energy, entropy=h,
                          marginal_difference=marginal_difference(q, exact.marginals), marginals=q,
                          support=est.support, num_samples=self.num_samples, seconds=seconds,
                          entropy_saturated=saturated)


def evaluate_samples(model: PairwiseModel, configs: torch.Tensor, exact: ExactResult, *,
                     bias_correction: bool = True, chunk_size: int = 2**18) -> Evaluation:
    """Table row of a model given by integer samples ``configs`` (shape (m, n))."""
    t0 = time.perf_counter()
    acc = SampleAccumulator(model)
    for s in range(0, configs.shape[0], check_int("chunk_size", chunk_size, minimum=1)):
        acc.add(configs[s:s + chunk_size])
    return acc.evaluate(exact, bias_correction=bias_correction, seconds=time.perf_counter() - t0)


def evaluate_flow(flow: RandomizedAssignmentFlow, model: PairwiseModel, exact: ExactResult, *,
                  num_samples: int = 10**6, generator: torch.Generator | None = None,
                  chunk_size: int | None = None, bias_correction: bool = True, rounding: str = "random") -> Evaluation:
    """Table row of a trained flow from ``num_samples`` integer samples (chunked, no grad), rounded as in
    :meth:`RandomizedAssignmentFlow.round`; ``chunk_size=None``: from the flow's memory budget."""
    rows, _ = evaluate_flow_roundings(flow, model, exact, roundings=(rounding,), num_samples=num_samples,
                                      generator=generator, chunk_size=chunk_size, bias_correction=bias_correction)
    return rows[rounding]


def evaluate_flow_roundings(flow: RandomizedAssignmentFlow, model: PairwiseModel, exact: ExactResult, *,
                            roundings=ROUNDINGS, num_samples: int = 10**6, generator: torch.Generator | None = None,
                            chunk_size: int | None = None, bias_correction: bool = True,
                            integral_tolerance: float = 0.1) -> tuple[dict, dict]:
    r"""Table rows of a trained flow for several roundings of the *same* soft end points.

    Returns ``({rounding: Evaluation}, stats)`` with ``stats["integral_fraction"]``, the fraction of soft
    samples whose every node has largest label probability :math:`\ge 1 -` ``integral_tolerance``, and
    ``stats["node_entropy"]``, the mean entropy of the soft end points.
    """
    num_samples = check_int("num_samples", num_samples, minimum=1)
    roundings = tuple(roundings)
    if not roundings or any(r not in ROUNDINGS for r in roundings):
        raise UserInputError(f"roundings must be a non-empty subset of {list(ROUNDINGS)}, got {list(roundings)}")
    if not 0 < float(integral_tolerance) < 1:
        raise UserInputError(f"integral_tolerance must be in (0, 1), got {integral_tolerance!r}")
    model = model.to(device=flow.device, dtype=flow.dtype)
    t0 = time.perf_counter()
    accs = {r: SampleAccumulator(model) for r in roundings}
    integral, node_h = 0, 0.0
    with torch.no_grad():
        for b in flow._chunks(num_samples, chunk_size):
            log_s = flow(b, generator)
            integral += int(integral_fraction(log_s, integral_tolerance).sum())
            node_h += float(-(log_s.exp() * log_s).nan_to_num().sum(-1).mean(-1).sum())
            for r, acc in accs.items():
                acc.add(flow.round(log_s, r, generator))
    seconds = time.perf_counter() - t0
    rows = {r: acc.evaluate(exact, bias_correction=bias_correction, seconds=seconds) for r, acc in accs.items()}
    return rows, {"integral_fraction": integral / num_samples, "integral_tolerance": float(integral_tolerance),
                  "node_entropy": node_h / num_samples}


def evaluate_factorized(model: PairwiseModel, q: torch.Tensor, exact: ExactResult) -> Evaluation:
    r"""Exact table row of the factorised distribution :math:`T(q)` (mean field)."""
    t0 = time.perf_counter()
    q = q.to(device=model.device, dtype=model.dtype)
    free = float(mean_field_free_energy(model, q))
    return Evaluation(kl=free + exact.log_z, energy=float(model.mean_field_energy(q)),
                      entropy=float(row_entropy(q).sum()), marginal_difference=marginal_difference(q, exact.marginals),
                      marginals=q, support=None, num_samples=0, seconds=time.perf_counter() - t0)
