r"""Gibbs samplers of pairwise models.

* :class:`GibbsSampler` -- many parallel chains on any graph; each sweep updates the colour classes of
  a greedy graph colouring in turn (nodes of one class are non-adjacent, so their conditionals
  :math:`P^*(\alpha_i \mid \alpha_{-i}) = \mathrm{softmax}(-\theta^i - \sum_{j\sim i}\theta^{ij}[\cdot, \alpha_j])`
  are independent and are resampled at once).
* :func:`grid_potts_gibbs` -- the same chain for Potts models on a 4-neighbour pixel grid (images).
  For :math:`\theta^{ij} = w(\mathbb{1}\mathbb{1}^\top - I)` on every grid edge, the conditional
  energy of pixel ``i`` taking label ``a`` is :math:`\theta^i_a - w\,\#\{j \sim i : \alpha_j = a\}`
  (up to a constant), computed for all pixels at once from the one-hot image and its four shifts.
  Each sweep updates the two checkerboard colours in turn, in ``O(B n c)`` per sweep without per-edge
  tables.  :func:`potts_coupling` detects such models (else ``None``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .._checks import check_int
from .models import PairwiseModel, grid_edges

__all__ = ["GibbsResult", "GibbsSampler", "grid_potts_gibbs", "potts_coupling"]


@dataclass
class GibbsResult:
    """Samples of :class:`GibbsSampler`: ``configs`` (num_samples, n) long, plus run statistics."""

    configs: torch.Tensor
    num_chains: int
    sweeps: int
    acceptance: float
    seconds: float


class GibbsSampler:
    """Parallel-chain Gibbs sampler with colour-class (checkerboard) updates.

    Parameters
    ----------
    num_chains : int
        Independent chains run in parallel (initialised uniformly at random).
    burn_in : int
        Sweeps discarded at the start of each chain.
    thinning : int
        Sweeps between two retained samples of a chain.
    seed : int
    """

    def __init__(self, num_chains: int = 1000, *, burn_in: int = 200, thinning: int = 2, seed: int = 0):
        self.num_chains = check_int("num_chains", num_chains, minimum=1)
        self.burn_in = check_int("burn_in", burn_in, minimum=0)
        self.thinning = check_int("thinning", thinning, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)

    def sample(self, model: PairwiseModel, num_samples: int) -> GibbsResult:
        """Draw ``num_samples`` configurations (rounded up to whole sweeps of all chains, then cut)."""
        num_samples = check_int("num_samples", num_samples, minimum=1)
        t0 = time.perf_counter()
        gen = torch.Generator(device=model.device)
        gen.manual_seed(self.seed)
        chains = min(self.num_chains, num_samples)
        state = torch.randint(model.num_labels, (chains, model.num_nodes), generator=gen, device=model.device)
        groups = model.node_coloring()
        kept, sweeps, changed, proposals = [], 0, 0, 0
        needed = -(-num_samples // chains)
        total_sweeps = self.burn_in + needed * self.thinning
        for sweep in range(total_sweeps):
            for nodes in groups:
                logits = -model.local_energies(state)[:, nodes]  # (B, k, c)
                u = torch.rand(logits.shape[:2], generator=gen, dtype=logits.dtype, device=model.device)
                cdf = torch.softmax(logits, -1).cumsum(-1)
                new = (u[..., None] > cdf).sum(-1).clamp_max(model.num_labels - 1)
                changed += int((new != state[:, nodes]).sum())
                proposals += new.numel()
                state[:, nodes] = new
            sweeps += 1
            if sweep >= self.burn_in and (sweep - self.burn_in + 1) % self.thinning == 0:
                kept.append(state.clone())
        configs = torch.stack(kept, 1).reshape(-1, model.num_nodes)[:num_samples]
        return GibbsResult(configs=configs, num_chains=chains, sweeps=sweeps,
                           acceptance=changed / max(proposals, 1), seconds=time.perf_counter() - t0)


def potts_coupling(model: PairwiseModel) -> float | None:
    """The coupling ``w`` if ``model`` is a grid Potts model with one shared table ``w (11^T - I)``, else None."""
    if model.grid_shape is None or model.num_edges == 0:
        return None
    rows, cols = model.grid_shape
    ref = grid_edges(rows, cols, device=model.device)
    if model.edges.shape != ref.shape or not bool((model.edges == ref).all()):
        return None
    c = model.num_labels
    w = float(model.pairwise.reshape(-1, c, c)[0, 0, 1])
    table = w * (torch.ones(c, c, dtype=model.dtype, device=model.device)
                 - torch.eye(c, dtype=model.dtype, device=model.device))
    return w if bool(torch.allclose(model.pairwise, table.expand_as(model.pairwise), rtol=0, atol=1e-12)) else None


def _neighbour_counts(onehot: torch.Tensor) -> torch.Tensor:
    """(B, c, H, W) one-hot -> number of 4-neighbours with each label, same shape."""
    p = torch.nn.functional.pad(onehot, (1, 1, 1, 1))
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def grid_potts_gibbs(model: PairwiseModel, num_samples: int, *, num_chains: int = 64, burn_in: int = 500,
                     thinning: int = 2, seed: int = 0) -> GibbsResult:
    """``num_samples`` configurations (n,) of a grid Potts model; ``configs`` is chain-major like
    :meth:`GibbsSampler.sample`'s (sample ``k`` of chain ``b`` at row ``b * per_chain + k``)."""
    w = potts_coupling(model)
    if w is None:
        raise ValueError("grid_potts_gibbs needs a grid Potts model (see potts_coupling)")
    num_samples = check_int("num_samples", num_samples, minimum=1)
    chains = min(check_int("num_chains", num_chains, minimum=1), num_samples)
    t0 = time.perf_counter()
    rows, cols = model.grid_shape
    c = model.num_labels
    gen = torch.Generator(device=model.device).manual_seed(seed)
    logits0 = -model.unary.T.reshape(1, c, rows, cols).float()
    state = torch.randint(c, (chains, rows, cols), generator=gen, device=model.device)
    parity = (torch.arange(rows)[:, None] + torch.arange(cols)[None, :]).to(model.device) % 2
    needed = -(-num_samples // chains)
    total = burn_in + needed * thinning
    kept, changed = [], 0
    for sweep in range(total):
        for colour in (0, 1):
            onehot = torch.nn.functional.one_hot(state, c).permute(0, 3, 1, 2).float()
            logits = logits0 + w * _neighbour_counts(onehot)
            u = torch.rand(chains, 1, rows, cols, generator=gen, device=model.device)
            cdf = torch.softmax(logits, 1).cumsum(1)
            new = (u > cdf).sum(1).clamp_max(c - 1)
            mask = parity == colour
            changed += int(((new != state) & mask).sum())
            state = torch.where(mask, new, state)
        if sweep >= burn_in and (sweep - burn_in + 1) % thinning == 0:
            kept.append(state.reshape(chains, -1).clone())
    configs = torch.stack(kept, 1).reshape(-1, rows * cols)[:num_samples]
    return GibbsResult(configs=configs, num_chains=chains, sweeps=total,
                       acceptance=changed / max(1, total * chains * rows * cols), seconds=time.perf_counter() - t0)
