r"""Entropy estimators from samples: plug-in, Miller--Madow, Chao--Shen, and the paper's smoothed support.

Integer samples :math:`\alpha(1), \ldots, \alpha(m) \in [c]^n` give counts :math:`y_\alpha`, the
empirical distribution :math:`\hat p_\alpha = y_\alpha / m`, the observed support
:math:`\hat s = |\{\alpha : y_\alpha > 0\}|` and the number of singletons
:math:`f_1 = |\{\alpha : y_\alpha = 1\}|`.

* **Plug-in** (paper 001, eq. (19)): :math:`\hat H = -\sum_\alpha \hat p_\alpha \log \hat p_\alpha`.
  Biased low by :math:`(s - 1)/(2m) + O(m^{-2})` (eq. (20)).
* **Miller--Madow** (eq. (20) with the observed support):
  :math:`\hat H_{MM} = \hat H + (\hat s - 1)/(2m)`.  Consistent only for :math:`m \gg s`.
* **Chao--Shen** (Chao & Shen 2003, *Environ. Ecol. Stat.* 10, 429--443): the Good--Turing
  coverage :math:`\hat C = 1 - f_1/m` (with :math:`f_1 = m - 1` if every sample is a singleton)
  shrinks the empirical distribution to :math:`\tilde p_\alpha = \hat C \hat p_\alpha`, and a
  Horvitz--Thompson weight corrects for the configurations never seen,

  .. math::
      \hat H_{CS} = -\sum_{\alpha : y_\alpha > 0}
      \frac{\tilde p_\alpha \log \tilde p_\alpha}{1 - (1 - \tilde p_\alpha)^m} .

  It stays useful at *moderate* support, :math:`m` of the order of :math:`e^{H}`, where the
  plug-in and Miller--Madow estimates are far too low (see ``tests/test_randomized_entropy_estimators.py``).
* **Smoothed support** (paper 001, Sect. 4, Fig. 1 training): eq. (22) for soft samples
  :math:`S^k` with the Miller--Madow correction, in which "the unknown support s is replaced by the
  empirical support :math:`\hat s` smoothed by the mean entropy of nodewise assignment".  The paper
  gives no formula; we read it as the effective number of configurations a soft sample covers,

  .. math::
      \hat s_\sigma = \min\big(c^n,\; \hat s\, e^{\bar h}\big), \qquad
      \bar h = \frac1m \sum_k \sum_i H(S^k_i), \quad H(S^k_i) = -\sum_a S^k_{ia}\log S^k_{ia},

  so that :math:`\hat s_\sigma = \hat s` for integer samples (the estimate is then Miller--Madow),
  :math:`\hat s_\sigma` grows with the nodewise uncertainty, and the correction
  :math:`(\hat s_\sigma - 1)/(2m)` carries a gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import UserInputError, UserTypeError, check_int
from .entropy import config_counts, differentiable_entropy, entropy_from_counts

__all__ = ["EntropyEstimates", "chao_shen_entropy", "entropy_estimates", "entropy_estimates_from_counts",
           "smoothed_support", "smoothed_support_entropy"]


@dataclass
class EntropyEstimates:
    """Entropy estimates of one sample, in nats.

    Attributes
    ----------
    plugin, miller_madow, chao_shen : float
        :math:`\\hat H`, :math:`\\hat H_{MM}`, :math:`\\hat H_{CS}`.
    support : int
        Observed support :math:`\\hat s`.
    singletons : int
        :math:`f_1`, configurations seen exactly once.
    coverage : float
        Good--Turing coverage :math:`\\hat C = 1 - f_1/m` (after the :math:`f_1 = m - 1` adjustment).
    num_samples : int
        :math:`m`.
    """

    plugin: float
    miller_madow: float
    chao_shen: float
    support: int
    singletons: int
    coverage: float
    num_samples: int


def _check_counts(counts) -> torch.Tensor:
    if not isinstance(counts, torch.Tensor):
        try:
            counts = torch.as_tensor(counts)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserTypeError(f"counts must be a 1-D integer array, got {type(counts).__name__}") from exc
    if counts.is_floating_point() or counts.is_complex() or counts.dtype == torch.bool:
        raise UserTypeError(f"counts must be a 1-D integer array, got dtype {counts.dtype}")
    if counts.ndim != 1:
        raise UserInputError(f"counts must be 1-dimensional, got shape {tuple(counts.shape)}")
    if counts.numel() and int(counts.min()) < 0:
        raise UserInputError(f"counts must be non-negative, got minimum {int(counts.min())}")
    counts = counts[counts > 0].long()
    if counts.numel() == 0:
        raise UserInputError("counts must hold at least one sample, got total 0")
    return counts


def _check_configs(configs, num_labels) -> tuple[torch.Tensor, int]:
    num_labels = check_int("num_labels", num_labels, minimum=2)
    if not isinstance(configs, torch.Tensor):
        try:
            configs = torch.as_tensor(configs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserTypeError(f"configs must be an integer array of shape (n_samples, n), "
                                f"got {type(configs).__name__}") from exc
    if configs.is_floating_point() or configs.is_complex() or configs.dtype == torch.bool:
        raise UserTypeError(f"configs must be an integer array of shape (n_samples, n), got dtype {configs.dtype}")
    if configs.ndim != 2 or configs.shape[0] == 0 or configs.shape[1] == 0:
        raise UserInputError(f"configs must have shape (n_samples, n) with n_samples, n >= 1, "
                             f"got shape {tuple(configs.shape)}")
    lo, hi = int(configs.min()), int(configs.max())
    if lo < 0 or hi >= num_labels:
        raise UserInputError(f"configs must hold labels in [0, {num_labels - 1}], got range [{lo}, {hi}]")
    return configs.long(), num_labels


def _chao_shen_from_counts(counts: torch.Tensor) -> tuple[float, int, float]:
    r"""Chao--Shen entropy :math:`\hat H_{CS}` from positive counts: ``(estimate, f1, coverage)``."""
    m = int(counts.sum())
    f1 = int((counts == 1).sum())
    if f1 == m:  # all singletons: coverage 0 would give 0/0
        f1 = m - 1
    coverage = 1.0 - f1 / m
    pa = coverage * counts.double() / m
    weight = -torch.expm1(m * torch.log1p(-pa))  # 1 - (1 - pa)^m, accurate for small pa
    return float(-(pa * pa.log() / weight).sum()), f1, coverage


def entropy_estimates_from_counts(counts) -> EntropyEstimates:
    r"""Plug-in, Miller--Madow and Chao--Shen estimates from the counts of the distinct configurations.

    Parameters
    ----------
    counts : 1-D integer array
        :math:`y_\alpha` of the observed configurations (zeros are ignored).

    Examples
    --------
    >>> est = entropy_estimates_from_counts([3, 1, 1])
    >>> round(est.plugin, 4), round(est.miller_madow, 4), round(est.coverage, 2)
    (0.9503, 1.1503, 0.6)
    """
    counts = _check_counts(counts)
    mm = entropy_from_counts(counts, bias_correction=True)
    cs, f1, coverage = _chao_shen_from_counts(counts)
    return EntropyEstimates(plugin=mm.plugin + 0.0, miller_madow=mm.entropy + 0.0, chao_shen=cs + 0.0,
                            support=mm.support, singletons=f1, coverage=coverage, num_samples=mm.num_samples)


def entropy_estimates(configs, num_labels: int) -> EntropyEstimates:
    r"""Plug-in (19), Miller--Madow (20) and Chao--Shen estimates of :math:`H(P)` from samples of :math:`P`.

    Parameters
    ----------
    configs : integer tensor, shape (n_samples, n)
        Integer samples :math:`\alpha(k) \in [c]^n`.
    num_labels : int
        :math:`c \ge 2`.
    """
    configs, num_labels = _check_configs(configs, num_labels)
    return entropy_estimates_from_counts(config_counts(configs, num_labels)[1])


def chao_shen_entropy(configs, num_labels: int) -> float:
    r"""The coverage-adjusted Chao--Shen estimate :math:`\hat H_{CS}` (nats) of integer samples (n_samples, n)."""
    return entropy_estimates(configs, num_labels).chao_shen


def _check_log_samples(log_samples) -> torch.Tensor:
    if not isinstance(log_samples, torch.Tensor) or not log_samples.is_floating_point():
        what = log_samples.dtype if isinstance(log_samples, torch.Tensor) else type(log_samples).__name__
        raise UserTypeError(f"log_samples must be a floating tensor of shape (m, n, c), got {what}")
    if log_samples.ndim != 3 or 0 in log_samples.shape or log_samples.shape[2] < 2:
        raise UserInputError(f"log_samples must have shape (m, n, c) with m, n >= 1 and c >= 2, "
                             f"got shape {tuple(log_samples.shape)}")
    if bool(torch.isnan(log_samples).any()) or bool((log_samples > 1e-6).any()):
        raise UserInputError("log_samples must hold log-probabilities (<= 0, no NaN), got entries above 0 or NaN")
    return log_samples


def smoothed_support(log_samples: torch.Tensor) -> torch.Tensor:
    r"""Smoothed support count :math:`\hat s_\sigma = \min(c^n, \hat s\,e^{\bar h})` of soft samples.

    Parameters
    ----------
    log_samples : tensor, shape (m, n, c)
        :math:`\log S^k` (rows on the simplex; ``-inf`` allowed for exact zeros).

    Returns
    -------
    tensor, shape ()
        Differentiable in ``log_samples`` through :math:`\bar h = \frac1m\sum_k\sum_i H(S^k_i)`;
        :math:`\hat s` is the number of distinct argmax roundings.
    """
    log_samples = _check_log_samples(log_samples)
    _, n, c = log_samples.shape
    support = config_counts(log_samples.detach().argmax(-1), c)[1].numel()
    probs = log_samples.exp()
    node_entropy = -torch.special.xlogy(probs, probs).sum(-1)  # (m, n); 0 log 0 = 0
    h_bar = node_entropy.sum(1).mean()
    cap = min(n * math.log(c), math.log(torch.finfo(log_samples.dtype).max) - 1.0)
    return torch.exp(torch.clamp(math.log(support) + h_bar, max=cap))


def smoothed_support_entropy(log_samples: torch.Tensor) -> torch.Tensor:
    r"""The paper's entropy estimate for soft samples: eq. (22) plus the smoothed support correction.

    .. math::
        \hat H_\sigma = -\frac1m\sum_k \log \hat P_{\alpha(k)} + \frac{\hat s_\sigma - 1}{2m},
        \qquad \hat P_\alpha = \frac1m\sum_l T(S^l)_\alpha ,

    with :math:`\alpha(k) = \operatorname{argmax} S^k` and :math:`\hat s_\sigma` from
    :func:`smoothed_support`.  For integer samples it equals the Miller--Madow estimate (20).

    Parameters
    ----------
    log_samples : tensor, shape (m, n, c)

    Returns
    -------
    tensor, shape ()
        Differentiable in ``log_samples``.
    """
    log_samples = _check_log_samples(log_samples)
    m = log_samples.shape[0]
    h22 = differentiable_entropy(log_samples, estimator="samples", bias_correction=False)
    return h22 + (smoothed_support(log_samples) - 1) / (2 * m)
