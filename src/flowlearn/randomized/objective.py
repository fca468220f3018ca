r"""The training objective of a randomized assignment flow: differentiable entropy estimates from soft samples.

Training minimises (paper 001, eq. (14)) :math:`\mathrm{KL}[P : P^*] = -H(P) + \langle P, E\rangle + \log Z^*`
(:func:`batch_objective`).  The entropy term is estimated from ``m`` soft samples
:math:`S^l \in \mathcal{W}` (the flow's end points), with :math:`\alpha(k) = \operatorname{argmax} S^k`
the rounded samples and :math:`\hat P_\alpha = \frac1m\sum_l T(S^l)_\alpha` (eq. (23),
:func:`mixture_log_density`):

* :func:`differentiable_entropy` -- eq. (22) (``estimator="samples"``) or its sum over the distinct
  rounded samples (``"support"``), Miller--Madow corrected (20);
* :func:`smoothed_support_entropy` -- eq. (22) plus the paper's smoothed support correction
  (Sect. 4, Fig. 1 training): "the unknown support s is replaced by the empirical support
  :math:`\hat s` smoothed by the mean entropy of nodewise assignment".  The paper gives no formula;
  we read it as the effective number of configurations a soft sample covers,

  .. math::
      \hat s_\sigma = \min\big(c^n,\; \hat s\, e^{\bar h}\big), \qquad
      \bar h = \frac1m \sum_k \sum_i H(S^k_i), \quad H(S^k_i) = -\sum_a S^k_{ia}\log S^k_{ia},

  so that :math:`\hat s_\sigma = \hat s` for integer samples (the estimate is then Miller--Madow),
  :math:`\hat s_\sigma` grows with the nodewise uncertainty, and the correction
  :math:`(\hat s_\sigma - 1)/(2m)` carries a gradient (:func:`smoothed_support`);
* :func:`entropy_score_surrogate` -- an unbiased-gradient surrogate for the finite-time mixture
  :math:`P(T)` (the default of training, ``entropy_estimator="score"``).

For integer samples every estimate equals the plug-in entropy (19) of
:func:`flowlearn.pgm.entropy_estimates`.
"""

from __future__ import annotations

import math

import torch

from .._checks import UserInputError, UserTypeError
from ..pgm.entropy import config_counts
from ..pgm.models import PairwiseModel
from .sampling import categorical

__all__ = ["batch_objective", "differentiable_entropy", "entropy_score_surrogate", "mixture_log_density",
           "smoothed_support", "smoothed_support_entropy"]


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
    log_p = mixture_log_density(log_samples, rows)  # log P_hat at the rows
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
    # L[k, l] = sum_i log S^l_{i, alpha(k)_i} = <onehot(alpha(k)), log S^l> as one matmul;
    # clamping -inf to a large finite negative keeps 0 * (-inf) out (exp of it is still 0)
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


def batch_objective(log_s: torch.Tensor, model: PairwiseModel, generator: torch.Generator | None = None, *,
                    bias_correction: bool = True, energy_weight: float = 1.0, entropy_estimator: str = "support",
                    random_roundings: int = 0):
    r"""One stochastic estimate of :math:`-H(P) + \beta\langle P, E\rangle` (eq. (14) without log Z*) from soft
    log-samples ``(m, n, c)``: ``(objective, energy, entropy)``; ``objective`` is differentiable, ``energy``
    and ``entropy`` are the unweighted estimates."""
    energy = model.mean_field_energy(log_s.exp()).mean()
    if entropy_estimator == "score":
        surrogate, entropy = entropy_score_surrogate(log_s, num_roundings=max(random_roundings, 1),
                                                     generator=generator)
        return energy_weight * energy + surrogate, energy, entropy
    entropy = differentiable_entropy(log_s, estimator=entropy_estimator, bias_correction=bias_correction,
                                     random_roundings=random_roundings, generator=generator)
    return energy_weight * energy - entropy, energy, entropy
