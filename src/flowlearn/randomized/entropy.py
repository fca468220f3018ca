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

from .._checks import UserInputError
from .sampling import categorical

__all__ = ["PluginEntropy", "config_counts", "differentiable_entropy", "entropy_from_counts", "entropy_score_surrogate",
           "mixture_log_density", "plugin_entropy"]


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
        raise UserInputError(f"configs must be an integer tensor of shape (m, n), got {configs.dtype} "
                         f"of shape {tuple(configs.shape)}")
    if configs.shape[0] == 0:
        raise UserInputError("configs must hold at least one sample, got 0")
    return entropy_from_counts(config_counts(configs, num_labels)[1], bias_correction=bias_correction)


def entropy_from_counts(counts: torch.Tensor, *, bias_correction: bool = True) -> PluginEntropy:
    r"""Plug-in entropy (19) from the counts of the distinct configurations (shape ``(s,)``)."""
    counts = counts[counts > 0]
    m = int(counts.sum())
    if m == 0:
        raise UserInputError("counts must hold at least one sample, got total 0")
    p = counts.double() / m
    h = float(-(p * p.log()).sum())
    s = int(counts.numel())
    corrected = h + (s - 1) / (2 * m) if bias_correction else h
    return PluginEntropy(entropy=corrected, plugin=h, support=s, num_samples=m, bias_correction=bias_correction)


def differentiable_entropy(log_samples: torch.Tensor, *, estimator: str = "support",
                           bias_correction: bool = True, random_roundings: int = 0,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Differentiable entropy estimate from soft samples, in nats.

    With :math:`\alpha(k) = \operatorname{argmax} S^k` the rounded samples and
    :math:`\hat P_\alpha = \frac1m\sum_l T(S^l)_\alpha = \frac1m\sum_l \exp\sum_i \log S^l_{i,\alpha_i}`
    (eq. (23), one matrix product),

    * ``estimator="samples"`` -- the paper's eq. (22):
      :math:`-\hat H = \frac1m\sum_k \log \hat P_{\alpha(k)}`;
    * ``estimator="support"`` -- :math:`-\hat H = \sum_{\alpha\in\{\alpha(k)\}} \hat P_\alpha\log\hat P_\alpha`,
      summing over the *distinct* rounded samples.

    Both equal the plug-in entropy (19) for integer samples.  Their gradients differ: for
    (22) the derivative with respect to :math:`T(S^l)_\alpha` is
    :math:`\frac1m \#\{k: \alpha(k)=\alpha\}/(m\hat P_\alpha) \approx \frac1m` for every
    occupied :math:`\alpha`, so moving mass between modes changes it by nothing (the
    :math:`\log p` part of :math:`\partial(-H)/\partial p_\alpha = \log p_\alpha + 1` sits in the
    discrete counts).  The support form keeps :math:`\frac1m(\log\hat P_\alpha + 1)` and so
    balances the modes; it is the default for training (see ``docs/randomized.md``).

    Parameters
    ----------
    log_samples : tensor, shape (m, n, c)
        :math:`\log S^l` of ``m`` samples on the assignment manifold (``-inf`` allowed for
        exact zeros, e.g. integer samples).
    estimator : {"support", "samples"}
    random_roundings : int
        ``"support"`` only: also add ``random_roundings`` draws :math:`\alpha \sim T(S^k)` per
        sample to the summation set, so that the mass of soft samples off their argmax is
        counted (the estimate then targets the finite-time mixture :math:`P(t)` of eq. (6)).
        For integer samples the draws equal the argmax and change nothing.
    generator : torch.Generator, optional
        For the random roundings.
    bias_correction : bool
        Add the Miller--Madow term :math:`(\hat s - 1)/(2m)` with :math:`\hat s` the number of
        distinct rounded samples (a constant: it carries no gradient).

    Returns
    -------
    tensor, shape ()
        :math:`\hat H`; gradients flow into ``log_samples``.
    """
    if log_samples.ndim != 3:
        raise UserInputError(f"log_samples must have shape (m, n, c), got shape {tuple(log_samples.shape)}")
    if estimator not in ("support", "samples"):
        raise UserInputError(f"estimator must be one of ['support', 'samples'], got {estimator!r}")
    m, n, c = log_samples.shape
    rounded = log_samples.detach().argmax(-1)  # (m, n)
    distinct, counts = config_counts(rounded, c)
    rows = distinct if estimator == "support" else rounded
    if estimator == "support" and random_roundings > 0:
        probs = log_samples.detach().exp().reshape(m * n, c)
        draws = categorical(probs, random_roundings, generator)
        draws = draws.reshape(m, n, random_roundings).permute(0, 2, 1).reshape(-1, n)
        rows = config_counts(torch.cat([rounded, draws]), c)[0]
    # L[k, l] = sum_i log S^l_{i, alpha(k)_i} = <onehot(alpha(k)), log S^l> as one matmul;
    # clamping -inf to a large finite negative keeps 0 * (-inf) out (exp of it is still 0)
    floor = torch.finfo(log_samples.dtype).min / (2 * n * c)
    log_t = _one_hot(rows, c, log_samples.dtype) @ log_samples.clamp_min(floor).reshape(m, n * c).T
    log_p = torch.logsumexp(log_t, dim=1) - math.log(m)  # log P_hat at the rows
    if estimator == "support":
        neg_h = (log_p.exp() * log_p).sum()
    else:
        neg_h = log_p.mean()
    h = -neg_h
    if bias_correction:
        h = h + (counts.numel() - 1) / (2 * m)
    return h


def _one_hot(configs: torch.Tensor, c: int, dtype) -> torch.Tensor:
    """``one_hot(configs, c)`` built directly in ``dtype``, flattened to (K, n*c)."""
    K, n = configs.shape
    out = torch.zeros(K, n, c, dtype=dtype, device=configs.device)
    return out.scatter_(2, configs.unsqueeze(-1), 1.0).reshape(K, n * c)


def mixture_log_density(log_samples: torch.Tensor, configs: torch.Tensor) -> torch.Tensor:
    r""":math:`\log \hat P_\alpha = \log \frac1m \sum_l T(S^l)_\alpha` at ``configs`` (shape (K, n)) -> (K,).

    ``log_samples`` (m, n, c); one matrix product (eq. (23)).
    """
    m, n, c = log_samples.shape
    floor = torch.finfo(log_samples.dtype).min / (2 * n * c)
    log_t = _one_hot(configs, c, log_samples.dtype) @ log_samples.clamp_min(floor).reshape(m, n * c).T
    return torch.logsumexp(log_t, dim=1) - math.log(m)


def entropy_score_surrogate(log_samples: torch.Tensor, *, num_roundings: int = 4,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Unbiased-gradient surrogate for :math:`-H` of the finite-time mixture :math:`P = \mathbb{E}[T(S)]`.

    With :math:`P_\alpha = \mathbb{E}_\omega T(S(\omega))_\alpha`,
    :math:`\nabla(-H) = \sum_\alpha \nabla P_\alpha \log P_\alpha
    = \mathbb{E}_\omega \mathbb{E}_{\alpha\sim T(S(\omega))}[\log P_\alpha\, \nabla\log T(S(\omega))_\alpha]`
    (the ``+1`` of :math:`\nabla(p\log p)` integrates to zero).  Each soft sample ``k`` is rounded
    ``num_roundings`` times at random, :math:`\alpha(k,r) \sim T(S^k)`, :math:`\log P_\alpha` is
    replaced by :math:`\log\hat P_\alpha` (:func:`mixture_log_density`, detached) minus its mean
    (a baseline), and the surrogate is
    :math:`\frac{1}{mR}\sum_{k,r} (\log\hat P_{\alpha(k,r)} - b)\sum_i \log S^k_{i,\alpha(k,r)_i}`.

    Returns
    -------
    surrogate : tensor, shape ()
        Its gradient estimates :math:`\nabla(-H)`; its value is meaningless.
    entropy : tensor, shape ()
        The estimate :math:`\hat H = -\frac{1}{mR}\sum_{k,r}\log\hat P_{\alpha(k,r)}` (detached).
        For integer samples it is the plug-in entropy (19).
    """
    if log_samples.ndim != 3:
        raise UserInputError(f"log_samples must have shape (m, n, c), got shape {tuple(log_samples.shape)}")
    if isinstance(num_roundings, bool) or not isinstance(num_roundings, int) or num_roundings < 1:
        raise UserInputError(f"num_roundings must be an integer >= 1, got {num_roundings!r}")
    m, n, c = log_samples.shape
    probs = log_samples.detach().exp().reshape(m * n, c)
    draws = categorical(probs, num_roundings, generator)
    draws = draws.reshape(m, n, num_roundings).permute(0, 2, 1)  # (m, R, n)
    log_p = mixture_log_density(log_samples.detach(), draws.reshape(-1, n)).reshape(m, num_roundings)
    advantage = log_p - log_p.mean()
    own = log_samples.gather(2, draws.permute(0, 2, 1)).sum(1)  # (m, R): log T(S^k)_{alpha(k, r)}
    surrogate = (advantage * own).mean()
    return surrogate, -log_p.mean()
