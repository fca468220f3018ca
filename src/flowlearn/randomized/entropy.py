r"""Entropy estimators for distributions given by samples (paper 001, eqs. (18)--(23)).

* :func:`plugin_entropy`: plug-in entropy (19) of integer samples with the Miller--Madow
  bias correction (20), :math:`\hat H + (\hat s - 1)/(2m)`, where :math:`\hat s` is the
  empirical support size.
* :func:`differentiable_entropy`: the differentiable surrogate (22)/(23) for soft samples
  :math:`S^l \in \mathcal{W}`,

  .. math::
      -\hat H \approx -\log m + \frac1m \sum_k \operatorname{logsumexp}_l
      \Big(\sum_i \log S^l_{i,\alpha(k)_i}\Big),

  with :math:`\alpha(k) = \operatorname{argmax} S^k` the rounded samples.  For integer
  samples it equals the plug-in entropy exactly (eq. (21)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["PluginEntropy", "config_counts", "differentiable_entropy", "entropy_from_counts", "plugin_entropy"]


@dataclass
class PluginEntropy:
    """Plug-in entropy of integer samples.

    Attributes
    ----------
    entropy : float
        Reported estimate (Miller--Madow corrected when requested).
    plugin : float
        Uncorrected plug-in entropy :math:`H(\\hat p)`.
    support : int
        Number of distinct configurations :math:`\\hat s`.
    num_samples : int
    bias_correction : bool
    """

    entropy: float
    plugin: float
    support: int
    num_samples: int
    bias_correction: bool


def config_counts(configs: torch.Tensor, num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct configurations and their counts: ``(unique (s, n), counts (s,))``.

    Uses a mixed-radix integer key when :math:`c^n < 2^{62}` (fast), else row-wise unique.
    """
    n = configs.shape[1]
    if n * math.log2(max(num_labels, 2)) < 62:
        powers = num_labels ** torch.arange(n - 1, -1, -1, device=configs.device, dtype=torch.long)
        keys = (configs.long() * powers).sum(1)
        uniq, counts = torch.unique(keys, return_counts=True)
        uniq_cfg = (uniq[:, None] // powers) % num_labels
        return uniq_cfg, counts
    return torch.unique(configs.long(), dim=0, return_counts=True)


def plugin_entropy(configs: torch.Tensor, num_labels: int, *, bias_correction: bool = True) -> PluginEntropy:
    r"""Plug-in entropy (19) of integer samples ``configs`` (shape ``(m, n)``), in nats.

    With ``bias_correction`` the Miller--Madow term :math:`(\hat s - 1)/(2m)` is added (20).
    """
    if configs.is_floating_point() or configs.ndim != 2:
        raise ValueError(f"configs must be an integer tensor of shape (m, n), got {configs.dtype} "
                         f"of shape {tuple(configs.shape)}")
    if configs.shape[0] == 0:
        raise ValueError("configs must hold at least one sample, got 0")
    return entropy_from_counts(config_counts(configs, num_labels)[1], bias_correction=bias_correction)


def entropy_from_counts(counts: torch.Tensor, *, bias_correction: bool = True) -> PluginEntropy:
    r"""Plug-in entropy (19) from the counts of the distinct configurations (shape ``(s,)``)."""
    counts = counts[counts > 0]
    m = int(counts.sum())
    if m == 0:
        raise ValueError("counts must hold at least one sample, got total 0")
    p = counts.double() / m
    h = float(-(p * p.log()).sum())
    s = int(counts.numel())
    corrected = h + (s - 1) / (2 * m) if bias_correction else h
    return PluginEntropy(entropy=corrected, plugin=h, support=s, num_samples=m, bias_correction=bias_correction)


def differentiable_entropy(log_samples: torch.Tensor, *, bias_correction: bool = True) -> torch.Tensor:
    r"""Differentiable entropy estimate (22)/(23) from soft samples, in nats.

    Parameters
    ----------
    log_samples : tensor, shape (m, n, c)
        :math:`\log S^l` of ``m`` samples on the assignment manifold (``-inf`` allowed for
        exact zeros, e.g. integer samples).
    bias_correction : bool
        Add the Miller--Madow term :math:`(\hat s - 1)/(2m)` with :math:`\hat s` the number of
        distinct rounded samples (a constant: it carries no gradient).

    Returns
    -------
    tensor, shape ()
        :math:`\hat H`; gradients flow into ``log_samples``.
    """
    if log_samples.ndim != 3:
        raise ValueError(f"log_samples must have shape (m, n, c), got shape {tuple(log_samples.shape)}")
    m, n, c = log_samples.shape
    rounded = log_samples.detach().argmax(-1)  # (m, n)
    # L[k, l] = sum_i log S^l_{i, alpha(k)_i} = <onehot(alpha(k)), log S^l> as one matmul;
    # clamping -inf to a large finite negative keeps 0 * (-inf) out (exp of it is still 0)
    floor = torch.finfo(log_samples.dtype).min / (2 * n * c)
    onehot = torch.nn.functional.one_hot(rounded, c).to(log_samples.dtype).reshape(m, n * c)
    log_t = onehot @ log_samples.clamp_min(floor).reshape(m, n * c).T  # (m_k, m_l)
    neg_h = -math.log(m) + torch.logsumexp(log_t, dim=1).mean()
    h = -neg_h
    if bias_correction:
        support = config_counts(rounded, c)[1].numel()
        h = h + (support - 1) / (2 * m)
    return h
