r"""Exact inference by brute-force enumeration of all :math:`c^n` configurations.

Configurations are indexed in mixed radix with node 0 most significant,
:math:`\mathrm{index}(\alpha) = \sum_i \alpha_i c^{n-1-i}` (also the order of :func:`log_probability_table` and
:func:`kl_from_table`).  Enumeration runs in chunks, vectorised inside each chunk.

References: paper 001, eqs. (10), (14).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .._checks import UserInputError, as_tensor, check_int, check_shape
from .entropy import entropy_estimates
from .models import PairwiseModel

__all__ = ["ExactResult", "MAX_CONFIGURATIONS", "configurations", "energy_chunks", "exact_inference", "kl_from_samples",
           "kl_from_table", "log_probability_table"]

#: Largest number of configurations enumerated (2**24, i.e. 24 binary nodes).
MAX_CONFIGURATIONS = 2**24


@dataclass
class ExactResult:
    """Exact quantities of a Gibbs distribution :math:`P^* = e^{-E}/Z^*`: ``log_z`` :math:`\\log Z^*`, node
    ``marginals`` (n, c), ``entropy`` :math:`H(P^*) = \\log Z^* + \\langle P^*, E\\rangle` and
    ``expected_energy`` :math:`\\langle P^*, E\\rangle`."""

    log_z: float
    marginals: torch.Tensor
    entropy: float
    expected_energy: float
    num_configurations: int
    seconds: float


def _check_size(model: PairwiseModel, max_configurations: int) -> int:
    n, c = model.num_nodes, model.num_labels
    log_n = n * math.log(c)
    if log_n > math.log(max_configurations) + 1e-9:
        raise UserInputError(
            f"exact enumeration needs c**n = {c}**{n} configurations, above the limit "
            f"max_configurations = {max_configurations} (about {int(math.log2(max_configurations))} binary nodes)"
        )
    return c**n


def configurations(num_nodes: int, num_labels: int, start: int = 0, stop: int | None = None,
                   *, device=None) -> torch.Tensor:
    """Configurations with indices ``start .. stop-1`` (node 0 most significant), shape ``(B, n)``."""
    n = check_int("num_nodes", num_nodes, minimum=1)
    c = check_int("num_labels", num_labels, minimum=2)
    total = c**n
    stop = total if stop is None else stop
    if not 0 <= start <= stop <= total:
        raise UserInputError(f"need 0 <= start <= stop <= {total}, got start={start}, stop={stop}")
    idx = torch.arange(start, stop, device=device, dtype=torch.long)
    powers = c ** torch.arange(n - 1, -1, -1, device=device, dtype=torch.long)
    return (idx[:, None] // powers) % c


def energy_chunks(model: PairwiseModel, chunk_size: int = 2**20):
    r"""Yield ``(start, energies)`` for consecutive index ranges covering all :math:`c^n` configurations.

    Each chunk fixes the first ``r`` nodes (``c^(n-r) <= chunk_size``) and builds the energies of all
    completions node by node, by broadcasting the unaries and the tables to earlier nodes; ``energies`` is
    flat, of length ``c^(n-r)``, in :func:`configurations` order.
    """
    n, c = model.num_nodes, model.num_labels
    free = min(n, max(1, int(math.floor(math.log(max(chunk_size, c)) / math.log(c) + 1e-9))))
    r = n - free
    # edges oriented (earlier, later) with tables indexed [label earlier, label later]
    lower = {k: [] for k in range(n)}
    for e, (i, j) in enumerate(model.edges.tolist()):
        if i < j:
            lower[j].append((i, model.pairwise[e]))
        else:
            lower[i].append((j, model.pairwise[e].T))
    for p_index in range(c**r):
        prefix = configurations(r, c, p_index, p_index + 1, device=model.device)[0].tolist() if r else []
        base = torch.zeros((), dtype=model.dtype, device=model.device)
        for k in range(r):
            base = base + model.unary[k, prefix[k]]
            for j, tab in lower[k]:
                base = base + tab[prefix[j], prefix[k]]
        energy = base.reshape(1)
        for k in range(r, n):
            size = energy.numel()  # c**(k - r): completions of nodes r..k-1
            row = model.unary[k] + sum((tab[prefix[j]] for j, tab in lower[k] if j < r),
                                       torch.zeros(c, dtype=model.dtype, device=model.device))
            new = energy[:, None] + row
            for j, tab in lower[k]:
                if j >= r:  # view as (c**(j-r), c [node j], rest, c [node k])
                    new = (new.reshape(c ** (j - r), c, -1, c) + tab[None, :, None, :]).reshape(size, c)
            energy = new.reshape(-1)
        yield p_index * c**free, energy


def exact_inference(model: PairwiseModel, *, chunk_size: int = 2**20,
                    max_configurations: int = MAX_CONFIGURATIONS) -> ExactResult:
    r"""Exact :math:`\log Z^*`, marginals, entropy and expected energy by enumeration, in two chunked passes (a
    streaming log-sum-exp of :math:`-E_\alpha`, then the moments of :math:`P^*_\alpha`); raises ``ValueError`` if
    :math:`c^n` exceeds ``max_configurations``."""
    t0 = time.perf_counter()
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    total = _check_size(model, max_configurations)
    n, c = model.num_nodes, model.num_labels
    log_z = torch.tensor(-math.inf, dtype=model.dtype, device=model.device)
    for _, e in energy_chunks(model, chunk_size):
        log_z = torch.logaddexp(log_z, torch.logsumexp(-e, 0))
    marg = torch.zeros(n, c, dtype=model.dtype, device=model.device)
    mean_e = torch.zeros((), dtype=model.dtype, device=model.device)
    for start, e in energy_chunks(model, chunk_size):
        p = torch.exp(-e - log_z)
        mean_e = mean_e + (p * e).sum()
        size = e.numel()
        free = int(round(math.log(size) / math.log(c))) if size > 1 else 0
        r = n - free
        prefix = configurations(n, c, start, start + 1, device=model.device)[0]
        mass = p.sum()
        for j in range(r):
            marg[j, prefix[j]] += mass
        rest = p
        for k in range(free):  # peel off the leading node: O(c^free) in total
            rest = rest.reshape(c, -1)
            marg[r + k] += rest.sum(1)
            rest = rest.sum(0)
    return ExactResult(log_z=float(log_z), marginals=marg, entropy=float(log_z + mean_e),
                       expected_energy=float(mean_e), num_configurations=total,
                       seconds=time.perf_counter() - t0)


def log_probability_table(model: PairwiseModel, *, max_configurations: int = 2**20) -> torch.Tensor:
    r"""The full table :math:`\log P^*_\alpha`, shape ``(c^n,)`` (default limit 2**20 entries)."""
    _check_size(model, max_configurations)
    e = torch.cat([e for _, e in energy_chunks(model)])
    return -e - torch.logsumexp(-e, 0)


def kl_from_table(model: PairwiseModel, probabilities, *, log_z: float | None = None,
                  chunk_size: int = 2**20, max_configurations: int = MAX_CONFIGURATIONS) -> float:
    r"""Exact :math:`\mathrm{KL}[P : P^*] = -H(P) + \langle P, E\rangle + \log Z^*` (eq. (14)).

    ``probabilities`` (c^n,) is a probability table in the order of :func:`configurations`; ``log_z`` is
    computed by :func:`exact_inference` unless given.
    """
    total = _check_size(model, max_configurations)
    p = as_tensor("probabilities", probabilities, dtype=model.dtype, device=model.device)
    check_shape("probabilities", p, (total,))
    if bool((p < 0).any()) or abs(float(p.sum()) - 1.0) > 1e-6:
        raise UserInputError(f"probabilities must be non-negative and sum to 1, got sum {float(p.sum()):.6g}"
                         f" and minimum {float(p.min()):.3g}")
    if log_z is None:
        log_z = exact_inference(model, chunk_size=chunk_size, max_configurations=max_configurations).log_z
    neg_h = torch.special.xlogy(p, p).sum()
    mean_e = torch.zeros((), dtype=model.dtype, device=model.device)
    for start, e in energy_chunks(model, chunk_size):
        mean_e = mean_e + (p[start:start + e.numel()] * e).sum()
    return float(neg_h + mean_e) + float(log_z)


def kl_from_samples(model: PairwiseModel, configs, *, log_z: float | None = None,
                    bias_correction: bool = True, chunk_size: int = 2**20) -> float:
    r"""Estimate :math:`\mathrm{KL}[P : P^*] \approx -\hat H + \overline{E} + \log Z^*` from integer samples of
    :math:`P`, with the plug-in entropy (19), Miller--Madow corrected (20) when ``bias_correction``."""
    configs = model.check_configs(configs)
    if log_z is None:
        log_z = exact_inference(model).log_z
    mean_e = sum(float(model._energy_unchecked(part).sum()) for part in configs.split(chunk_size))
    mean_e /= max(configs.shape[0], 1)
    est = entropy_estimates(configs, model.num_labels)
    h = est.miller_madow if bias_correction else est.plugin
    return -h + mean_e + float(log_z)
