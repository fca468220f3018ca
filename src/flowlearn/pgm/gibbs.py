r"""Gibbs samplers of pairwise models, with streamed statistics.

* :class:`GibbsSampler` -- parallel chains on any graph; each sweep resamples the colour classes of a greedy
  colouring in turn from :math:`\mathrm{softmax}(-\theta^i - \sum_{j\sim i}\theta^{ij}[\cdot, \alpha_j])`.
* :func:`grid_potts_gibbs` -- the same chain for Potts models :math:`\theta^{ij} = w(\mathbb{1}\mathbb{1}^\top - I)`
  on a 4-neighbour grid (:func:`potts_coupling`): the conditional energy of pixel ``i`` taking label ``a`` is
  :math:`\theta^i_a - w\,\#\{j \sim i : \alpha_j = a\}` (up to a constant), from the one-hot image and its four
  shifts, two checkerboard colours per sweep, ``O(B n c)`` per sweep without per-edge tables.

Both return a :class:`GibbsResult` of *streamed* statistics (memory ``O(C n c)`` for ``C`` chains, whatever the
number of samples); the samples themselves are kept only while ``num_samples * n <= MAX_KEPT_ENTRIES``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .._checks import UserInputError, check_int
from .models import PairwiseModel, grid_edges

__all__ = ["MAX_KEPT_ENTRIES", "GibbsResult", "GibbsSampler", "gibbs_bytes", "grid_potts_gibbs", "potts_coupling"]

#: Most labels (retained samples x nodes) a run stores as ``configs`` (2**26 int64 = 537 MB).
MAX_KEPT_ENTRIES = 2**26


@dataclass
class GibbsResult:
    r"""Streamed statistics of a Gibbs run: ``C = num_chains`` chains, each retaining
    ``K = samples_per_chain`` configurations :math:`\alpha^{(b,k)}` (``m = C K`` samples in all).

    ``chain_counts`` (C, n, c) int32 are :math:`N_{bia} = \#\{k : \alpha^{(b,k)}_i = a\}`, ``chain_energy`` (C,)
    float64 :math:`\bar E_b = \frac1K \sum_k E(\alpha^{(b,k)})`, ``final`` (C, n) the chains' last states,
    ``acceptance`` the fraction of resampled labels that changed and ``kept`` (C, K, n) all retained samples,
    if the run kept them (see ``configs``).
    """

    chain_counts: torch.Tensor
    chain_energy: torch.Tensor
    final: torch.Tensor
    num_chains: int
    samples_per_chain: int
    sweeps: int
    acceptance: float
    seconds: float
    kept: torch.Tensor | None = None
    requested: int = 0

    @property
    def num_samples(self) -> int:
        """``m = C K`` samples behind the statistics (``num_samples`` rounded up to whole chains)."""
        return self.num_chains * self.samples_per_chain

    @property
    def configs(self) -> torch.Tensor:
        """The first ``requested`` retained samples (m', n) long, chain-major (sample ``k`` of chain ``b`` at row
        ``b K + k``); raises ``UserInputError`` when the run did not keep them."""
        if self.kept is None:
            entries = self.num_samples * self.final.shape[1]
            why = (f"num_samples x num_nodes = {entries} > MAX_KEPT_ENTRIES = {MAX_KEPT_ENTRIES}"
                   if entries > MAX_KEPT_ENTRIES else "keep_samples=False")
            raise UserInputError(f"configs: this Gibbs run kept no samples ({why}); use its streamed marginals, "
                                 f"chain_energy and final, or sample with keep_samples=True within the bound")
        return self.kept.reshape(-1, self.kept.shape[-1])[:self.requested or None]

    @property
    def chain_marginals(self) -> torch.Tensor:
        r""":math:`q^{(b)}_{ia} = N_{bia} / K`, shape (C, n, c), float64."""
        return self.chain_counts.double() / self.samples_per_chain

    @property
    def marginals(self) -> torch.Tensor:
        r""":math:`\hat p_{ia} = \frac1m \sum_b N_{bia}`, shape (n, c), float64."""
        return self.chain_counts.sum(0, dtype=torch.float64) / self.num_samples

    @property
    def marginal_standard_error(self) -> torch.Tensor:
        r"""Between-chain standard error :math:`\mathrm{std}_b(q^{(b)}_{ia}) / \sqrt C`, shape (n, c) (needs C >= 2)."""
        return self.chain_marginals.std(0) / math.sqrt(self.num_chains)

    @property
    def mean_energy(self) -> float:
        r""":math:`\bar E = \frac1C \sum_b \bar E_b`, the mean energy of all ``m`` samples."""
        return float(self.chain_energy.mean())

    @property
    def energy_standard_error(self) -> float:
        r""":math:`\mathrm{std}_b(\bar E_b) / \sqrt C` (needs C >= 2)."""
        return float(self.chain_energy.std() / math.sqrt(self.num_chains))

    def expected_hamming(self) -> float:
        r"""Mean Hamming distance (fraction of nodes) of two independent samples,
        :math:`\frac1n \sum_i (1 - \sum_a \widehat{p_{ia}^2})` (needs C >= 2), with the estimate
        :math:`\widehat{p_{ia}^2} = \big((\sum_b q^{(b)}_{ia})^2 - \sum_b (q^{(b)}_{ia})^2\big) / (C(C-1))`,
        unbiased across independent chains whatever the autocorrelation within a chain."""
        C = self.num_chains
        if C < 2:
            raise UserInputError(f"expected_hamming needs num_chains >= 2, got {C}")
        q = self.chain_marginals
        p2 = (q.sum(0) ** 2 - (q * q).sum(0)) / (C * (C - 1))
        return float((1.0 - p2.sum(-1)).mean())


class _Stream:
    """Running per-chain label counts and energies of retained states (and, optionally, the states)."""

    def __init__(self, num_samples: int, chains: int, n: int, c: int, keep_samples: bool | None, device):
        self.requested, self.chains = num_samples, chains
        self.per_chain = -(-num_samples // chains)
        stored = chains * self.per_chain
        if keep_samples and stored * n > MAX_KEPT_ENTRIES:
            raise UserInputError(f"keep_samples=True needs num_samples x num_nodes <= {MAX_KEPT_ENTRIES}, got "
                                 f"num_samples={num_samples} (rounded to {stored}) x {n} nodes; use "
                                 f"keep_samples=False and the streamed statistics")
        keep = stored * n <= MAX_KEPT_ENTRIES if keep_samples is None else keep_samples
        self.counts = torch.zeros(chains, n, c, dtype=torch.int32, device=device)
        self._ones = torch.ones(chains, n, 1, dtype=torch.int32, device=device)
        self.energy = torch.zeros(chains, dtype=torch.float64, device=device)
        self.kept = torch.empty(chains, self.per_chain, n, dtype=torch.long, device=device) if keep else None
        self.k = 0

    def add(self, state: torch.Tensor, energy: torch.Tensor) -> None:
        """``state`` (C, n) long, ``energy`` (C,) of that state."""
        self.counts.scatter_add_(2, state[..., None], self._ones)
        self.energy += energy.double()
        if self.kept is not None:
            self.kept[:, self.k] = state
        self.k += 1

    def result(self, final: torch.Tensor, sweeps: int, acceptance: float, t0: float) -> GibbsResult:
        return GibbsResult(chain_counts=self.counts, chain_energy=self.energy / self.per_chain, final=final,
                           num_chains=self.chains, samples_per_chain=self.per_chain, sweeps=sweeps,
                           acceptance=acceptance, seconds=time.perf_counter() - t0, kept=self.kept,
                           requested=self.requested)


def gibbs_bytes(num_nodes: int, num_labels: int, num_chains: int) -> int:
    r"""Estimated peak working memory in bytes of a streaming :func:`grid_potts_gibbs` run, whatever the number of
    samples: :math:`C n (64 + 48 c)` (calibrated against the peak RSS of runs with ``c`` = 2, 3, 6)."""
    return num_chains * num_nodes * (64 + 48 * num_labels)


class GibbsSampler:
    """Parallel-chain Gibbs sampler with colour-class (checkerboard) updates: ``num_chains`` independent chains
    (initialised uniformly at random) discard ``burn_in`` sweeps, then retain a sample every ``thinning`` sweeps."""

    def __init__(self, num_chains: int = 1000, *, burn_in: int = 200, thinning: int = 2, seed: int = 0):
        self.num_chains = check_int("num_chains", num_chains, minimum=1)
        self.burn_in = check_int("burn_in", burn_in, minimum=0)
        self.thinning = check_int("thinning", thinning, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)

    def sample(self, model: PairwiseModel, num_samples: int, *, keep_samples: bool | None = None,
               on_sample=None) -> GibbsResult:
        """Run ``min(num_chains, num_samples)`` chains for ``ceil(num_samples / chains)`` retained samples each;
        ``keep_samples``: store them too (``configs``; True is refused beyond ``MAX_KEPT_ENTRIES``, None keeps them
        only within).  ``on_sample`` is called with a copy of every retained state ``(chains, n)``."""
        num_samples = check_int("num_samples", num_samples, minimum=1)
        t0 = time.perf_counter()
        gen = torch.Generator(device=model.device).manual_seed(self.seed)
        chains = min(self.num_chains, num_samples)
        stream = _Stream(num_samples, chains, model.num_nodes, model.num_labels, keep_samples, model.device)
        state = torch.randint(model.num_labels, (chains, model.num_nodes), generator=gen, device=model.device)
        groups = model.node_coloring()
        changed, proposals = 0, 0
        total = self.burn_in + stream.per_chain * self.thinning
        for sweep in range(total):
            for nodes in groups:
                logits = -model.local_energies(state)[:, nodes]  # (B, k, c)
                u = torch.rand(logits.shape[:2], generator=gen, dtype=logits.dtype, device=model.device)
                cdf = torch.softmax(logits, -1).cumsum(-1)
                new = (u[..., None] > cdf).sum(-1).clamp_max(model.num_labels - 1)
                changed += int((new != state[:, nodes]).sum())
                proposals += new.numel()
                state[:, nodes] = new
            if sweep >= self.burn_in and (sweep - self.burn_in + 1) % self.thinning == 0:
                stream.add(state, model._energy_unchecked(state))
                if on_sample is not None:
                    on_sample(state.clone())
        return stream.result(state, total, changed / max(proposals, 1), t0)


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
    table = w * (1 - torch.eye(c, dtype=model.dtype, device=model.device))
    return w if bool(torch.allclose(model.pairwise, table.expand_as(model.pairwise), rtol=0, atol=1e-12)) else None


def _potts_energy(unary: torch.Tensor, w: float, state: torch.Tensor) -> torch.Tensor:
    r"""Energies (B,) of grid states ``state`` (B, H, W): :math:`\sum_i \theta^i_{\alpha_i} + w\,\#\{i \sim j:
    \alpha_i \ne \alpha_j\}` (= ``model.energy`` of a grid Potts model)."""
    cuts = (state[:, 1:] != state[:, :-1]).sum((1, 2)) + (state[:, :, 1:] != state[:, :, :-1]).sum((1, 2))
    return unary.gather(1, state.reshape(state.shape[0], -1).T).sum(0) + w * cuts.to(unary.dtype)


def grid_potts_gibbs(model: PairwiseModel, num_samples: int, *, num_chains: int = 64, burn_in: int = 500,
                     thinning: int = 2, seed: int = 0, keep_samples: bool | None = None) -> GibbsResult:
    """:class:`GibbsSampler`'s chain for a grid Potts model, vectorised on the pixel grid (module docstring);
    retained samples and ``keep_samples`` as in :meth:`GibbsSampler.sample`.  Any other model (see
    :func:`potts_coupling`) runs :class:`GibbsSampler` itself."""
    w = potts_coupling(model)
    if w is None:
        return GibbsSampler(num_chains, burn_in=burn_in, thinning=thinning, seed=seed).sample(
            model, num_samples, keep_samples=keep_samples)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    chains = min(check_int("num_chains", num_chains, minimum=1), num_samples)
    t0 = time.perf_counter()
    rows, cols = model.grid_shape
    c = model.num_labels
    stream = _Stream(num_samples, chains, rows * cols, c, keep_samples, model.device)
    gen = torch.Generator(device=model.device).manual_seed(seed)
    logits0 = -model.unary.T.reshape(1, c, rows, cols).float()
    state = torch.randint(c, (chains, rows, cols), generator=gen, device=model.device)
    labels = torch.arange(c, device=model.device)[:, None, None]
    parity = (torch.arange(rows)[:, None] + torch.arange(cols)[None, :]).to(model.device) % 2
    total = burn_in + stream.per_chain * thinning
    changed = 0
    for sweep in range(total):
        for colour in (0, 1):
            # padded one-hot (B, c, H + 2, W + 2), without one_hot's int64 (B, H, W, c); its 4 shifts count neighbours
            p = torch.nn.functional.pad((state[:, None] == labels).float(), (1, 1, 1, 1))
            logits = logits0 + w * (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:])
            del p
            u = torch.rand(chains, 1, rows, cols, generator=gen, device=model.device)
            cdf = torch.softmax(logits, 1).cumsum(1)
            del logits
            new = (u > cdf).sum(1).clamp_max(c - 1)
            del cdf
            mask = parity == colour
            changed += int(((new != state) & mask).sum())
            state = torch.where(mask, new, state)
        if sweep >= burn_in and (sweep - burn_in + 1) % thinning == 0:
            stream.add(state.reshape(chains, -1), _potts_energy(model.unary, w, state))
    return stream.result(state.reshape(chains, -1), total, changed / max(1, total * chains * rows * cols), t0)
