r"""A fast checkerboard Gibbs sampler for Potts models on a 4-neighbour pixel grid (images).

For :math:`\theta^{ij} = w(\mathbb{1}\mathbb{1}^\top - I)` on every grid edge, the conditional
energy of pixel ``i`` taking label ``a`` is :math:`\theta^i_a - w\,\#\{j \sim i : \alpha_j = a\}`
(up to a constant), computed for all pixels at once from the one-hot image and its four shifts.
Each sweep updates the two checkerboard colours in turn, so it is exactly the colour-class Gibbs
sampler of :class:`~flowlearn.randomized.baselines.GibbsSampler`, in ``O(B n c)`` per sweep without
per-edge tables.  :func:`potts_coupling` detects such models (else ``None``).
"""

from __future__ import annotations

import time

import torch

from .._checks import check_int
from .baselines import GibbsResult
from .models import PairwiseModel, grid_edges

__all__ = ["grid_potts_gibbs", "potts_coupling"]


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
