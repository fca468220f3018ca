r"""Geometry of the relative interior of the probability simplex.

All functions act on the **last axis** and broadcast over leading axes, so an assignment matrix
:math:`W \in \mathbb{R}^{I\times J}` (a point of the *assignment manifold* :math:`\mathcal{W}`, one point of
:math:`\mathcal{S}=\mathrm{rel\,int}\,\Delta_J` per row) is handled row-wise.  Notation (Åström et al. 2017;
Zeilmann et al. 2020):

* tangent space :math:`T_0 = \{v : \langle \mathbb{1}, v\rangle = 0\}`, projection
  :math:`\Pi_0 = I - \tfrac1J \mathbb{1}\mathbb{1}^\top`;
* replicator :math:`R_p = \mathrm{Diag}(p) - pp^\top`, :math:`R_p v = p\odot(v-\langle p,v\rangle\mathbb{1})`;
* lifting map :math:`\exp_p(v) = \frac{p\odot e^{v}}{\langle p, e^{v}\rangle} = \mathrm{softmax}(v+\log p)`,
  inverse on :math:`T_0`: :math:`\exp_p^{-1}(q) = \Pi_0 \log(q/p)`, differential :math:`R_{\exp_p(v)}`;
* e-exponential :math:`\mathrm{Exp}_p(v) = \exp_p(v/p)`, inverse :math:`\mathrm{Exp}_p^{-1}(q) = R_p \log(q/p)`;
* Fisher--Rao metric :math:`\langle u,v\rangle_p = \langle u/p, v\rangle`, Riemannian gradient
  :math:`\mathrm{grad} f(p) = R_p \partial f(p)`.

Everything is computed in the log domain, so distances up to 1e4 and probabilities down to 1e-300 (float64)
give no NaN/inf.  Results keep the input's device and dtype.
"""

from __future__ import annotations

import torch

from .._checks import UserInputError

__all__ = ["Simplex", "barycenter", "egrad2rgrad", "entropy", "expmap", "inner", "lift", "lift_inverse", "log_lift",
           "logmap", "proj_tangent", "replicator", "replicator_", "replicator_matrix"]


def barycenter(*shape: int, dtype=None, device=None) -> torch.Tensor:
    """The barycenter :math:`\\mathbb{1}_\\mathcal{S} = \\mathbb{1}/J` with ``shape[-1] = J``."""
    if not shape or shape[-1] < 1:
        raise UserInputError(f"shape must end with the number of labels J >= 1, got {shape}")
    return torch.full(shape, 1.0 / shape[-1], dtype=dtype, device=device)


def proj_tangent(v: torch.Tensor) -> torch.Tensor:
    r"""Orthogonal projection :math:`\Pi_0 v = v - \mathrm{mean}(v)\,\mathbb{1}` onto :math:`T_0`."""
    return v - v.mean(-1, keepdim=True)


def replicator(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""Replicator map :math:`R_p v = p\odot(v - \langle p, v\rangle \mathbb{1})` (symmetric, into :math:`T_0`)."""
    return p * (v - (p * v).sum(-1, keepdim=True))


def replicator_(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""In place :math:`v \leftarrow R_p v` (for work vectors that do not require grad); returns ``v``."""
    return v.sub_((p * v).sum(-1, keepdim=True)).mul_(p)


def replicator_matrix(p: torch.Tensor) -> torch.Tensor:
    r"""Dense replicator matrices :math:`\mathrm{Diag}(p) - pp^\top`, shape ``(..., J, J)``."""
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


def log_lift(log_p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""Log of the lifting map from log-probabilities: :math:`\log\exp_p(v) = \mathrm{log\_softmax}(v + \log p)`."""
    return torch.log_softmax(v + log_p, dim=-1)


def lift(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""Lifting map :math:`\exp_p(v) = \mathrm{softmax}(v + \log p)` for points ``p`` ``(..., J)`` of the open
    simplex and any ``v`` ``(..., J)`` (only :math:`\Pi_0 v` matters)."""
    return torch.softmax(v + torch.log(p), dim=-1)


def lift_inverse(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r"""Inverse of the lifting map on :math:`T_0`: :math:`\exp_p^{-1}(q) = \Pi_0\log(q/p)`."""
    return proj_tangent(torch.log(q) - torch.log(p))


def expmap(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""e-exponential map :math:`\mathrm{Exp}_p(v) = \exp_p(v/p)` for :math:`v \in T_0` (``softmax(J v)`` at the
    barycenter)."""
    return lift(p, v / p)


def logmap(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r"""Inverse of :func:`expmap`: :math:`\mathrm{Exp}_p^{-1}(q) = R_p\log(q/p)`."""
    return replicator(p, torch.log(q) - torch.log(p))


def inner(p: torch.Tensor, u: torch.Tensor, v: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    r"""Fisher--Rao inner product :math:`\langle u, v\rangle_p = \sum_j u_j v_j / p_j`."""
    return (u * v / p).sum(-1, keepdim=keepdim)


def egrad2rgrad(p: torch.Tensor, egrad: torch.Tensor) -> torch.Tensor:
    r"""Riemannian (Fisher--Rao) gradient :math:`R_p\,\partial f` from the Euclidean gradient."""
    return replicator(p, egrad)


def entropy(p: torch.Tensor) -> torch.Tensor:
    r"""Row entropy :math:`H(p) = -\sum_j p_j\log p_j` (with :math:`0\log 0 = 0`), shape ``(...)``."""
    return -torch.special.xlogy(p, p).sum(-1)


class Simplex:
    """The open probability simplex with the Fisher--Rao metric, in geoopt's verbs (on the last axis).

    Examples
    --------
    >>> import torch
    >>> from flowlearn.geometry import Simplex
    >>> M = Simplex()
    >>> p = M.random(4, 3, generator=torch.Generator().manual_seed(0))
    >>> v = M.proju(p, torch.randn(4, 3))
    >>> q = M.expmap(p, v)
    >>> torch.allclose(M.logmap(p, q), v, atol=1e-5)
    True
    """

    name = "Simplex"

    def proju(self, p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Projection onto the tangent space :math:`T_0` (independent of ``p``)."""
        return proj_tangent(u)

    def inner(self, p, u, v=None, keepdim: bool = False):
        r"""Fisher--Rao inner product :math:`\langle u, v\rangle_p` (``v = u`` if omitted); see :func:`inner`."""
        return inner(p, u, u if v is None else v, keepdim=keepdim)

    # the verbs that are the module's functions (the retraction is the e-exponential map, cheap and exact here)
    egrad2rgrad = staticmethod(egrad2rgrad)
    expmap = retr = staticmethod(expmap)
    logmap = staticmethod(logmap)
    lift = staticmethod(lift)
    barycenter = staticmethod(barycenter)

    def random(self, *shape: int, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Random points: ``softmax`` of standard normal logits."""
        z = torch.randn(*shape, dtype=dtype, device=device, generator=generator)
        return torch.softmax(z, dim=-1)
