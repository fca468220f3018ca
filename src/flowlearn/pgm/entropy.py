r"""Entropy estimates of a distribution given by integer samples: plug-in, Miller--Madow, Chao--Shen.

Integer samples :math:`\alpha(1), \ldots, \alpha(m) \in [c]^n` give counts :math:`y_\alpha`, :math:`\hat p_\alpha =
y_\alpha / m`, the observed support :math:`\hat s` and the singletons :math:`f_1 = |\{\alpha : y_\alpha = 1\}|`:

* **Plug-in** (paper 001, eq. (19)): :math:`\hat H = -\sum_\alpha \hat p_\alpha \log \hat p_\alpha`.
* **Miller--Madow** (eq. (20)): :math:`\hat H_{MM} = \hat H + (\hat s - 1)/(2m)`; consistent for :math:`m \gg s`.
* **Chao--Shen** (Chao & Shen 2003, *Environ. Ecol. Stat.* 10, 429--443): the Good--Turing coverage
  :math:`\hat C = 1 - f_1/m` (with :math:`f_1 = m - 1` if every sample is a singleton) shrinks
  :math:`\hat p` to :math:`\tilde p_\alpha = \hat C \hat p_\alpha`, and a Horvitz--Thompson weight corrects
  for the configurations never seen,
  :math:`\hat H_{CS} = -\sum_{y_\alpha > 0} \tilde p_\alpha \log \tilde p_\alpha / (1 - (1 - \tilde p_\alpha)^m)`.
  It stays useful at moderate support, :math:`m \sim e^{H}`, where the other two are far too low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import UserInputError, check_int
from .models import integer_tensor

__all__ = ["EntropyEstimates", "config_counts", "config_keys", "entropy_estimates", "entropy_estimates_from_counts"]


@dataclass
class EntropyEstimates:
    """Entropy estimates of one sample, in nats: :math:`\\hat H` (``plugin``), :math:`\\hat H_{MM}`
    (``miller_madow``), :math:`\\hat H_{CS}` (``chao_shen``), the observed support :math:`\\hat s`, the
    singletons :math:`f_1`, the coverage :math:`\\hat C` (after the :math:`f_1 = m - 1` adjustment) and :math:`m`."""

    plugin: float
    miller_madow: float
    chao_shen: float
    support: int
    singletons: int
    coverage: float
    num_samples: int


def config_keys(configs: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Exact keys ``(m, w)`` int64 of configurations ``(m, n)``: their base-``c`` digits packed into words of at
    most 62 bits, most significant first, so keys order like the configurations (lexicographically)."""
    m, n = configs.shape
    per_word = max(1, int(62 / math.log2(max(num_labels, 2))))
    words = -(-n // per_word)
    x = torch.nn.functional.pad(configs.long(), (0, words * per_word - n))   # trailing zero digits keep the order
    powers = num_labels ** torch.arange(per_word - 1, -1, -1, device=configs.device, dtype=torch.long)
    return (x.reshape(m, words, per_word) * powers).sum(-1)


def unique_keys(keys: torch.Tensor, *, return_inverse: bool = False):
    """``torch.unique`` of :func:`config_keys` rows (with counts): over the one word, or row-wise."""
    if keys.shape[1] == 1:
        return torch.unique(keys[:, 0], return_inverse=return_inverse, return_counts=True)
    return torch.unique(keys, dim=0, return_inverse=return_inverse, return_counts=True)


def config_counts(configs: torch.Tensor, num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct configurations and their counts: ``(unique (s, n), counts (s,))``, in lexicographic order
    (by their :func:`config_keys`)."""
    _, inverse, counts = unique_keys(config_keys(configs, num_labels), return_inverse=True)
    first = torch.zeros(counts.numel(), dtype=torch.long, device=configs.device)
    first.scatter_(0, inverse, torch.arange(configs.shape[0], device=configs.device))   # any row of each key
    return configs[first].long(), counts


def _check_counts(counts) -> torch.Tensor:
    counts = integer_tensor("counts", counts, "a 1-D integer array")
    if counts.ndim != 1:
        raise UserInputError(f"counts must be 1-dimensional, got shape {tuple(counts.shape)}")
    if counts.numel() and int(counts.min()) < 0:
        raise UserInputError(f"counts must be non-negative, got minimum {int(counts.min())}")
    counts = counts[counts > 0].long()
    if counts.numel() == 0:
        raise UserInputError("counts must hold at least one sample, got total 0")
    return counts


def entropy_estimates_from_counts(counts) -> EntropyEstimates:
    r"""Plug-in, Miller--Madow and Chao--Shen estimates from the counts :math:`y_\alpha` of the distinct
    configurations (a 1-D integer array; zeros are ignored)."""
    counts = _check_counts(counts)
    m, s = int(counts.sum()), int(counts.numel())
    p = counts.double() / m
    h = float(-(p * p.log()).sum())
    f1 = int((counts == 1).sum())
    if f1 == m:  # all singletons: coverage 0 would give 0/0
        f1 = m - 1
    coverage = 1.0 - f1 / m
    pa = coverage * counts.double() / m
    weight = -torch.expm1(m * torch.log1p(-pa))  # 1 - (1 - pa)^m, accurate for small pa
    cs = float(-(pa * pa.log() / weight).sum())
    return EntropyEstimates(plugin=h + 0.0, miller_madow=h + (s - 1) / (2 * m) + 0.0, chao_shen=cs + 0.0,
                            support=s, singletons=f1, coverage=coverage, num_samples=m)


def entropy_estimates(configs, num_labels: int) -> EntropyEstimates:
    r"""Plug-in (19), Miller--Madow (20) and Chao--Shen estimates of :math:`H(P)` from integer samples
    ``configs`` (n_samples, n) of :math:`P` with ``num_labels`` :math:`c \ge 2` labels."""
    num_labels = check_int("num_labels", num_labels, minimum=2)
    configs = integer_tensor("configs", configs, "an integer array of shape (n_samples, n)")
    if configs.ndim != 2 or configs.shape[0] == 0 or configs.shape[1] == 0:
        raise UserInputError(f"configs must have shape (n_samples, n) with n_samples, n >= 1, "
                             f"got shape {tuple(configs.shape)}")
    lo, hi = int(configs.min()), int(configs.max())
    if lo < 0 or hi >= num_labels:
        raise UserInputError(f"configs must hold labels in [0, {num_labels - 1}], got range [{lo}, {hi}]")
    return entropy_estimates_from_counts(config_counts(configs.long(), num_labels)[1])
