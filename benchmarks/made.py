r"""MADE autoregressive sampler trained by reverse KL: the learned peer of the randomized flow.

A MADE (masked autoencoder for distribution estimation; Germain, Gregor, Murray, Larochelle, ICML 2015)
over the ``n`` grid nodes in row-major order with ``c`` labels:

.. math::
    q(x) = \prod_{i=1}^{n} q(x_i \mid x_{<i}), \qquad
    q(\cdot \mid x_{<i}) = \mathrm{softmax}\big(b^{(2)}_i + (W^{(2)} \odot M^{(2)})_i\,
    \mathrm{relu}(b^{(1)} + (W^{(1)} \odot M^{(1)})\,\mathrm{onehot}(x))\big),

with one hidden layer of ``H`` units of degrees :math:`m(k) \in \{1, \ldots, n-1\}`; input node ``i``
(0-based) has degree ``i + 1``, :math:`M^{(1)}_{k, (i,a)} = [m(k) \ge i + 1]` and
:math:`M^{(2)}_{(i,a), k} = [i + 1 > m(k)]`, so the logits of node ``i`` depend on nodes ``< i`` only.
Sampling is ancestral; with one hidden layer the pre-activations are updated incrementally
(:math:`O(nHc)` per sample instead of :math:`O(n^2 H c)`).

Training (Wu, Wang, Zhang, "Solving statistical mechanics using variational autoregressive networks",
PRL 122, 080602 (2019)): minimise :math:`\beta F_q = \mathbb{E}_q[\log q(x) + \beta E(x)]` (= KL[q : P^*_\beta]
:math:`- \log Z^*_\beta`) with the score-function gradient

.. math::
    \nabla_\phi \beta F_q = \mathbb{E}_q\big[(\log q(x) + \beta E(x) - b)\,\nabla_\phi \log q(x)\big],
    \qquad b = \text{batch mean of } \log q + \beta E,

and the inverse temperature annealed as :math:`\beta_t = 1 - \rho^{t}` (their eq. (9) schedule;
``anneal=0`` switches it off).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MADE", "MadeConfig", "train_made"]


class MADE(nn.Module):
    """One-hidden-layer MADE over ``num_nodes`` nodes with ``num_labels`` labels (module docstring).

    Parameters
    ----------
    num_nodes, num_labels : int
    hidden : int, optional
        Hidden units ``H`` (default ``2 * num_nodes``).
    seed : int
        Seeds the initial weights and hidden degrees.
    """

    def __init__(self, num_nodes: int, num_labels: int, *, hidden: int | None = None, seed: int = 0,
                 dtype=torch.float32):
        super().__init__()
        n, c = int(num_nodes), int(num_labels)
        h = int(hidden) if hidden else 2 * n
        self.num_nodes, self.num_labels, self.hidden = n, c, h
        gen = torch.Generator().manual_seed(seed)
        in_degree = torch.arange(1, n + 1).repeat_interleave(c)                 # (n c,)
        hidden_degree = (torch.arange(h) % max(n - 1, 1)) + 1 if n > 1 else torch.ones(h, dtype=torch.long)
        self.register_buffer("mask1", (hidden_degree[:, None] >= in_degree[None, :]).to(dtype))   # (H, n c)
        self.register_buffer("mask2", (in_degree[:, None] > hidden_degree[None, :]).to(dtype))    # (n c, H)
        self.w1 = nn.Parameter(torch.randn(h, n * c, generator=gen, dtype=dtype) / (n * c) ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(h, dtype=dtype))
        self.w2 = nn.Parameter(torch.randn(n * c, h, generator=gen, dtype=dtype) / h ** 0.5 * 0.1)
        self.b2 = nn.Parameter(torch.zeros(n * c, dtype=dtype))

    @property
    def dtype(self) -> torch.dtype:
        return self.w1.dtype

    def logits(self, onehot: torch.Tensor) -> torch.Tensor:
        """Conditional logits (B, n, c) from a (B, n*c) one-hot input (any real input: it is linear in it)."""
        a = torch.relu(onehot @ (self.w1 * self.mask1).T + self.b1)
        return (a @ (self.w2 * self.mask2).T + self.b2).reshape(-1, self.num_nodes, self.num_labels)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log q(x)` of integer configurations ``x`` (B, n), shape (B,)."""
        onehot = nn.functional.one_hot(x.long(), self.num_labels).to(self.dtype).reshape(x.shape[0], -1)
        logp = torch.log_softmax(self.logits(onehot), -1)
        return logp.gather(-1, x.long()[..., None]).squeeze(-1).sum(-1)

    @torch.no_grad()
    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch`` ancestral samples (batch, n), long; incremental hidden pre-activations."""
        n, c = self.num_nodes, self.num_labels
        w1 = (self.w1 * self.mask1).T.contiguous()                  # (n c, H): row i*c + a
        w2 = (self.w2 * self.mask2).reshape(n, c, -1)
        b2 = self.b2.reshape(n, c)
        pre = self.b1.expand(batch, -1).clone()
        x = torch.empty(batch, n, dtype=torch.long, device=pre.device)
        for i in range(n):
            logit = torch.relu(pre) @ w2[i].T + b2[i]
            cdf = torch.softmax(logit, -1).cumsum(-1)
            u = torch.rand(batch, 1, generator=generator, dtype=cdf.dtype, device=cdf.device)
            xi = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_max_(c - 1).squeeze(1)
            x[:, i] = xi
            pre += w1[i * c + xi]
        return x


@dataclass(frozen=True)
class MadeConfig:
    """Settings of :func:`train_made`.

    Attributes
    ----------
    iterations : int
        Adam steps (an upper bound; a callback may stop earlier).
    batch_size : int
    lr : float
    anneal : float
        :math:`\\rho` of :math:`\\beta_t = 1 - \\rho^{t+1}`; 0: :math:`\\beta = 1` throughout.
    seed : int
    """

    iterations: int = 10**6
    batch_size: int = 256
    lr: float = 3e-3
    anneal: float = 0.99
    seed: int = 0


def train_made(made: MADE, model, config: MadeConfig = MadeConfig(), *, callback=None) -> list[dict]:
    r"""Minimise :math:`\mathbb{E}_q[\log q + \beta E]` by the score-function gradient with a batch-mean baseline.

    ``callback(iteration)`` runs after every step; returning False stops.  Returns the history
    (``beta``, ``free_energy`` = batch mean of :math:`\log q + E` at :math:`\beta = 1` ... per step).
    """
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(made.parameters(), lr=config.lr)
    history = []
    for it in range(config.iterations):
        beta = 1.0 - config.anneal ** (it + 1) if config.anneal > 0 else 1.0
        x = made.sample(config.batch_size, gen)
        energy = model.energy(x).to(made.dtype)
        log_q = made.log_prob(x)
        with torch.no_grad():
            reward = log_q + beta * energy
            reward = reward - reward.mean()
        opt.zero_grad(set_to_none=True)
        (reward * log_q).mean().backward()
        opt.step()
        history.append({"beta": beta, "free_energy": float((log_q.detach() + energy).mean())})
        if callback is not None and callback(it) is False:
            break
    return history
