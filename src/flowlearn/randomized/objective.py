r"""The training objective of a randomized assignment flow: differentiable entropy estimates from soft samples.

Training minimises (paper 001, eq. (14)) :math:`\mathrm{KL}[P : P^*] = -H(P) + \langle P, E\rangle + \log Z^*`
(:func:`batch_objective`).  The entropy is estimated from ``m`` soft samples :math:`S^l` (the flow's end
points), with :math:`\alpha(k) = \operatorname{argmax} S^k` and :math:`\hat P_\alpha = \frac1m\sum_l T(S^l)_\alpha`
(eq. (23), :func:`mixture_log_density`):

* :func:`differentiable_entropy` -- eq. (22) or its sum over the distinct rounded samples, Miller--Madow
  corrected (20);
* :func:`smoothed_support_entropy` -- eq. (22) plus the paper's smoothed support correction (Sect. 4), which
  gives no formula; we read it as the effective number of configurations a soft sample covers,
  :math:`\hat s_\sigma = \min(c^n, \hat s\, e^{\bar h})`, :math:`\bar h = \frac1m \sum_k \sum_i H(S^k_i)`
  (:func:`smoothed_support`; :math:`\hat s` for integer samples, and the correction carries a gradient);
* :func:`entropy_score_surrogate` -- an unbiased-gradient surrogate for the finite-time mixture :math:`P(T)`
  (the default of training).

For integer samples every estimate equals the plug-in entropy (19).  The dense embedding of the assignment
manifold into the meta-simplex (Def. 1; :func:`embed_factorized`, :func:`embed_tangent`, :func:`marginalize`), for
small models, checks these estimates.
"""

from __future__ import annotations

import math

import torch

from .._checks import UserInputError, UserTypeError, check_choice, check_int
from ..pgm.entropy import config_counts
from ..pgm.enumeration import configurations
from ..pgm.models import PairwiseModel
from .sampling import categorical

__all__ = ["batch_objective", "differentiable_entropy", "embed_factorized", "embed_tangent", "entropy_score_surrogate",
           "marginalize", "mixture_log_density", "smoothed_support", "smoothed_support_entropy"]


def differentiable_entropy(log_samples: torch.Tensor, *, estimator: str = "support",
                           bias_correction: bool = True, random_roundings: int = 0,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Differentiable entropy estimate :math:`\hat H` (shape ()) from soft samples, in nats.

    * ``estimator="samples"`` -- the paper's eq. (22): :math:`-\hat H = \frac1m\sum_k \log \hat P_{\alpha(k)}`;
    * ``estimator="support"`` -- :math:`-\hat H = \sum_{\alpha\in\{\alpha(k)\}} \hat P_\alpha\log\hat P_\alpha`
      over the *distinct* rounded samples.

    Both equal the plug-in entropy (19) for integer samples.  The gradient of (22) with respect to
    :math:`T(S^l)_\alpha` is :math:`\approx \frac1m` for every occupied :math:`\alpha`, so moving mass between
    modes changes nothing; the support form keeps :math:`\frac1m(\log\hat P_\alpha + 1)` and so balances the
    modes (see ``docs/randomized.md``).

    Parameters
    ----------
    log_samples : tensor, shape (m, n, c)
        :math:`\log S^l` of ``m`` soft samples (``-inf`` allowed for exact zeros).
    estimator : {"support", "samples"}
    random_roundings : int
        ``"support"`` only: also sum over ``random_roundings`` draws :math:`\alpha \sim T(S^k)` per sample, so
        that the mass off the argmax is counted (the estimate then targets the mixture :math:`P(t)`, eq. (6)).
    generator : torch.Generator, optional
        For the random roundings.
    bias_correction : bool
        Add the Miller--Madow term :math:`(\hat s - 1)/(2m)`, :math:`\hat s` the number of distinct rounded
        samples (a constant without gradient).
    """
    if log_samples.ndim != 3:
        raise UserInputError(f"log_samples must have shape (m, n, c), got shape {tuple(log_samples.shape)}")
    check_choice("estimator", estimator, ("support", "samples"))
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
    h = -(log_p.exp() * log_p).sum() if estimator == "support" else -log_p.mean()
    return h + (counts.numel() - 1) / (2 * m) if bias_correction else h


def mixture_log_density(log_samples: torch.Tensor, configs: torch.Tensor) -> torch.Tensor:
    r""":math:`\log \hat P_\alpha = \log \frac1m \sum_l T(S^l)_\alpha` (K,) at ``configs`` (K, n), from ``log_samples``
    (m, n, c); one matrix product (eq. (23))."""
    m, n, c = log_samples.shape
    # L[k, l] = sum_i log S^l_{i, alpha(k)_i} = <onehot(alpha(k)), log S^l> as one matmul;
    # clamping -inf to a large finite negative keeps 0 * (-inf) out (exp of it is still 0)
    floor = torch.finfo(log_samples.dtype).min / (2 * n * c)
    onehot = torch.zeros(*configs.shape, c, dtype=log_samples.dtype, device=configs.device)
    onehot = onehot.scatter_(2, configs.unsqueeze(-1), 1.0).reshape(-1, n * c)   # built in the float dtype
    log_t = onehot @ log_samples.clamp_min(floor).reshape(m, n * c).T
    return torch.logsumexp(log_t, dim=1) - math.log(m)


def entropy_score_surrogate(log_samples: torch.Tensor, *, num_roundings: int = 4,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Unbiased-gradient surrogate for :math:`-H` of the finite-time mixture :math:`P = \mathbb{E}[T(S)]`.

    :math:`\nabla(-H) = \sum_\alpha \nabla P_\alpha \log P_\alpha
    = \mathbb{E}_\omega \mathbb{E}_{\alpha\sim T(S(\omega))}[\log P_\alpha\, \nabla\log T(S(\omega))_\alpha]`.
    Each soft sample ``k`` is rounded ``num_roundings`` times, :math:`\alpha(k,r) \sim T(S^k)`, :math:`\log P_\alpha`
    is replaced by :math:`\log\hat P_\alpha` (:func:`mixture_log_density`, detached) minus its mean :math:`b`,
    and the surrogate is :math:`\frac{1}{mR}\sum_{k,r} (\log\hat P_{\alpha(k,r)} - b)\sum_i \log S^k_{i,\alpha(k,r)_i}`.

    Returns
    -------
    surrogate : tensor, shape ()
        Its gradient estimates :math:`\nabla(-H)`; its value is meaningless.
    entropy : tensor, shape ()
        The estimate :math:`\hat H = -\frac{1}{mR}\sum_{k,r}\log\hat P_{\alpha(k,r)}` (detached).
    """
    if log_samples.ndim != 3:
        raise UserInputError(f"log_samples must have shape (m, n, c), got shape {tuple(log_samples.shape)}")
    check_int("num_roundings", num_roundings, minimum=1)
    m, n, c = log_samples.shape
    probs = log_samples.detach().exp().reshape(m * n, c)
    draws = categorical(probs, num_roundings, generator)
    draws = draws.reshape(m, n, num_roundings).permute(0, 2, 1)  # (m, R, n)
    log_p = mixture_log_density(log_samples.detach(), draws.reshape(-1, n)).reshape(m, num_roundings)
    own = log_samples.gather(2, draws.permute(0, 2, 1)).sum(1)  # (m, R): log T(S^k)_{alpha(k, r)}
    return ((log_p - log_p.mean()) * own).mean(), -log_p.mean()


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
    r"""Smoothed support count :math:`\hat s_\sigma = \min(c^n, \hat s\,e^{\bar h})` (shape ()) of soft samples
    ``log_samples`` (m, n, c), differentiable through :math:`\bar h = \frac1m\sum_k\sum_i H(S^k_i)`."""
    log_samples = _check_log_samples(log_samples)
    _, n, c = log_samples.shape
    support = config_counts(log_samples.detach().argmax(-1), c)[1].numel()
    probs = log_samples.exp()
    h_bar = -torch.special.xlogy(probs, probs).sum(-1).sum(1).mean()  # 0 log 0 = 0
    cap = min(n * math.log(c), math.log(torch.finfo(log_samples.dtype).max) - 1.0)
    return torch.exp(torch.clamp(math.log(support) + h_bar, max=cap))


def smoothed_support_entropy(log_samples: torch.Tensor) -> torch.Tensor:
    r"""The paper's entropy estimate for soft samples: eq. (22) plus the smoothed support correction.

    .. math::
        \hat H_\sigma = -\frac1m\sum_k \log \hat P_{\alpha(k)} + \frac{\hat s_\sigma - 1}{2m},
        \qquad \hat P_\alpha = \frac1m\sum_l T(S^l)_\alpha ,

    with :math:`\alpha(k) = \operatorname{argmax} S^k` and :math:`\hat s_\sigma` from :func:`smoothed_support`, for
    ``log_samples`` (m, n, c); differentiable.  For integer samples it equals the Miller--Madow estimate (20).
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


def _configs_for(x: torch.Tensor) -> torch.Tensor:
    n, c = x.shape[-2:]
    if n * torch.log2(torch.tensor(float(c))) > 24:
        raise UserInputError(f"dense embedding needs c**n <= 2**24 entries, got c={c}, n={n}")
    return configurations(n, c, device=x.device)


def embed_factorized(s: torch.Tensor) -> torch.Tensor:
    r""":math:`T(S)_\alpha = \prod_i S_{i,\alpha_i}` (eq. (4a)), shape ``(..., c^n)`` from ``s`` (..., n, c), in the
    order of :func:`flowlearn.pgm.enumeration.configurations`."""
    node = torch.arange(s.shape[-2], device=s.device)
    return s[..., node, _configs_for(s)].prod(-1)


def embed_tangent(v: torch.Tensor) -> torch.Tensor:
    r""":math:`Q(V)_\alpha = \sum_i V_{i,\alpha_i}` (eq. (4b)), shape ``(..., c^n)`` from ``v`` (..., n, c);
    :math:`T(\exp_S(V)) = \exp_{T(S)}(QV)` (Lemma 1)."""
    node = torch.arange(v.shape[-2], device=v.device)
    return v[..., node, _configs_for(v)].sum(-1)


def marginalize(p: torch.Tensor, num_nodes: int, num_labels: int) -> torch.Tensor:
    r""":math:`Q^\top p`, :math:`(Q^\top p)_{i,a} = \sum_{\alpha:\alpha_i=a} p_\alpha`, shape ``(..., n, c)`` from a
    table ``p`` of shape ``(..., c^n)`` (the inverse of :math:`T` on its range)."""
    if p.shape[-1] != num_labels**num_nodes:
        raise UserInputError(f"p must have last dimension c**n = {num_labels**num_nodes}, got shape {tuple(p.shape)}")
    cfg = configurations(num_nodes, num_labels, device=p.device)  # (N, n)
    onehot = torch.nn.functional.one_hot(cfg, num_labels).to(p.dtype)  # (N, n, c)
    return torch.einsum("...a,anc->...nc", p, onehot)
