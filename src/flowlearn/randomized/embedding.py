r"""Embedding of the assignment manifold into the meta-simplex (paper 001, Def. 1; Boll et al. 2021).

For ``n`` nodes with ``c`` labels, :math:`N = c^n` configurations indexed as in
:func:`flowlearn.pgm.configurations` (node 0 most significant):

* :math:`T(S)_\alpha = \prod_i S_{i,\alpha_i}` (eq. (4a)) -- factorised joint distribution;
* :math:`Q(V)_\alpha = \sum_i V_{i,\alpha_i}` (eq. (4b)) -- linear lift of tangent vectors;
* :math:`Q^\top p` -- marginalisation, :math:`(Q^\top p)_{i,a} = \sum_{\alpha:\alpha_i=a} p_\alpha`,
  the inverse of :math:`T` on its range.

Lemma 1: :math:`T(\exp_S(V)) = \exp_{T(S)}(QV)`.  These dense maps are for small ``n`` (tests,
illustrations): they materialise vectors of length :math:`c^n`.
"""

from __future__ import annotations

import torch

from .._checks import UserInputError
from ..pgm.enumeration import configurations

__all__ = ["embed_factorized", "embed_tangent", "marginalize"]


def _configs_for(x: torch.Tensor) -> torch.Tensor:
    n, c = x.shape[-2:]
    if n * torch.log2(torch.tensor(float(c))) > 24:
        raise UserInputError(f"dense embedding needs c**n <= 2**24 entries, got c={c}, n={n}")
    return configurations(n, c, device=x.device)


def embed_factorized(s: torch.Tensor) -> torch.Tensor:
    r""":math:`T(S)`, shape ``(..., c^n)`` from ``s`` of shape ``(..., n, c)``."""
    cfg = _configs_for(s)  # (N, n)
    node = torch.arange(s.shape[-2], device=s.device)
    return s[..., node, cfg].prod(-1)


def embed_tangent(v: torch.Tensor) -> torch.Tensor:
    r""":math:`Q(V)`, shape ``(..., c^n)`` from ``v`` of shape ``(..., n, c)``."""
    cfg = _configs_for(v)
    node = torch.arange(v.shape[-2], device=v.device)
    return v[..., node, cfg].sum(-1)


def marginalize(p: torch.Tensor, num_nodes: int, num_labels: int) -> torch.Tensor:
    r""":math:`Q^\top p`, shape ``(..., n, c)`` from a table ``p`` of shape ``(..., c^n)``."""
    if p.shape[-1] != num_labels**num_nodes:
        raise UserInputError(f"p must have last dimension c**n = {num_labels**num_nodes}, got shape {tuple(p.shape)}")
    cfg = configurations(num_nodes, num_labels, device=p.device)  # (N, n)
    onehot = torch.nn.functional.one_hot(cfg, num_labels).to(p.dtype)  # (N, n, c)
    return torch.einsum("...a,anc->...nc", p, onehot)
