r"""Gibbs samplers of pairwise models, with streamed statistics.

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

Both return a :class:`GibbsResult` of *streamed* statistics: per chain and node the label counts
and per chain the mean energy of the retained samples, plus the chains' final states.  Their memory
is ``O(C n c)`` for ``C`` chains, whatever the number of samples.  The retained configurations
themselves are kept (``GibbsResult.configs``, for plug-in entropies of small models) only while
``num_samples * n <= MAX_KEPT_ENTRIES``.
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

    Attributes
    ----------
    chain_counts : tensor (C, n, c), int32
        :math:`N_{bia} = \#\{k : \alpha^{(b,k)}_i = a\}`.
    chain_energy : tensor (C,), float64
        :math:`\bar E_b = \frac1K \sum_k E(\alpha^{(b,k)})`.
    final : tensor (C, n), long
        The chains' last states: ``C`` independent samples (for pictures and diversity measures).
    num_chains, samples_per_chain, sweeps : int
    acceptance : float
        Fraction of resampled labels that changed.
    seconds : float
    kept : tensor (C, K, n) long or None
        All retained samples, only if the run was asked or allowed to keep them (see ``configs``).
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
        """``m = C K`` samples behind the statistics (``num_samples`` rounded up to whole sweeps of all chains)."""
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
        r"""Mean pairwise Hamming distance (fraction of nodes) of two *independent* samples, from the marginals.

        Two independent draws differ at node ``i`` with probability :math:`1 - \sum_a p_{ia}^2`.  Chains
        are independent and each chain's :math:`q^{(b)}` is unbiased for :math:`p` at stationarity, so
        :math:`\widehat{p_{ia}^2} = \big((\sum_b q^{(b)}_{ia})^2 - \sum_b (q^{(b)}_{ia})^2\big) / (C(C-1))`
        is unbiased whatever the autocorrelation within a chain; returns
        :math:`\frac1n \sum_i (1 - \sum_a \widehat{p_{ia}^2})` (needs C >= 2).
        """
        C = self.num_chains
        if C < 2:
            raise UserInputError(f"expected_hamming needs num_chains >= 2, got {C}")
        q = self.chain_marginals
        p2 = (q.sum(0) ** 2 - (q * q).sum(0)) / (C * (C - 1))
        return float((1.0 - p2.sum(-1)).mean())


class _Stream:
    """Running per-chain label counts and energies of retained states (and, optionally, the states)."""

    def __init__(self, chains: int, per_chain: int, n: int, c: int, keep: bool, device):
        self.counts = torch.zeros(chains, n, c, dtype=torch.int32, device=device)
        self._ones = torch.ones(chains, n, 1, dtype=torch.int32, device=device)
        self.energy = torch.zeros(chains, dtype=torch.float64, device=device)
        self.kept = torch.empty(chains, per_chain, n, dtype=torch.long, device=device) if keep else None
        self.k = 0

    def add(self, state: torch.Tensor, energy: torch.Tensor) -> None:
        """``state`` (C, n) long, ``energy`` (C,) of that state."""
        self.counts.scatter_add_(2, state[..., None], self._ones)
        self.energy += energy.double()
        if self.kept is not None:
            self.kept[:, self.k] = state
        self.k += 1


def _keep(keep_samples: bool | None, num_samples: int, stored: int, n: int) -> bool:
    """Whether to keep all ``stored`` retained samples of ``n`` labels (None: when within MAX_KEPT_ENTRIES)."""
    if keep_samples is None:
        return stored * n <= MAX_KEPT_ENTRIES
    if keep_samples and stored * n > MAX_KEPT_ENTRIES:
        raise UserInputError(f"keep_samples=True needs num_samples x num_nodes <= {MAX_KEPT_ENTRIES}, got "
                             f"num_samples={num_samples} (rounded to {stored}) x {n} nodes; use keep_samples=False "
                             f"and the streamed statistics")
    return bool(keep_samples)


def gibbs_bytes(num_nodes: int, num_labels: int, num_chains: int, *, grid: bool = True) -> int:
    r"""Estimated peak working memory in bytes of a streaming Gibbs run (no kept samples), independent of the
    number of samples: chain states, counts :math:`N_{bia}` (int32) and the sweep's temporaries (one-hot,
    shifted neighbour counts, logits, softmax, cumulative sums), :math:`C n (64 + 48 c)` bytes for
    :func:`grid_potts_gibbs` (float32) and :math:`C n (100 + 64 c)` for :class:`GibbsSampler` (the model's
    float64 local energies); calibrated against the peak RSS of runs with ``c`` = 2, 3, 6."""
    C, n, c = num_chains, num_nodes, num_labels
    return C * n * ((64 + 48 * c) if grid else (100 + 64 * c))


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

    def sample(self, model: PairwiseModel, num_samples: int, *, keep_samples: bool | None = None,
               on_sample=None) -> GibbsResult:
        """Run ``min(num_chains, num_samples)`` chains for ``ceil(num_samples / chains)`` retained samples each.

        Statistics are streamed over all ``chains * per_chain`` retained samples; ``keep_samples``: store them too
        (``configs``, cut to ``num_samples``), True refused beyond ``MAX_KEPT_ENTRIES``, None (default) only within.
        ``on_sample``: called with every retained state ``(chains, n)`` (a copy), e.g. a streaming accumulator's
        ``add``, whatever the number of samples.
        """
        num_samples = check_int("num_samples", num_samples, minimum=1)
        t0 = time.perf_counter()
        gen = torch.Generator(device=model.device)
        gen.manual_seed(self.seed)
        chains = min(self.num_chains, num_samples)
        needed = -(-num_samples // chains)
        keep = _keep(keep_samples, num_samples, chains * needed, model.num_nodes)
        state = torch.randint(model.num_labels, (chains, model.num_nodes), generator=gen, device=model.device)
        stream = _Stream(chains, needed, model.num_nodes, model.num_labels, keep, model.device)
        groups = model.node_coloring()
        sweeps, changed, proposals = 0, 0, 0
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
                stream.add(state, model._energy_unchecked(state))
                if on_sample is not None:
                    on_sample(state.clone())
        return GibbsResult(chain_counts=stream.counts, chain_energy=stream.energy / needed, final=state,
                           num_chains=chains, samples_per_chain=needed, sweeps=sweeps,
                           acceptance=changed / max(proposals, 1), seconds=time.perf_counter() - t0,
                           kept=stream.kept, requested=num_samples)


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


def _potts_energy(unary: torch.Tensor, w: float, state: torch.Tensor) -> torch.Tensor:
    r"""Energies (B,) of grid states ``state`` (B, H, W): :math:`\sum_i \theta^i_{\alpha_i} + w\,\#\{i \sim j:
    \alpha_i \ne \alpha_j\}` (= ``model.energy`` of a grid Potts model)."""
    B = state.shape[0]
    flat = state.reshape(B, -1)
    cuts = (state[:, 1:] != state[:, :-1]).sum((1, 2)) + (state[:, :, 1:] != state[:, :, :-1]).sum((1, 2))
    return unary.gather(1, flat.T).sum(0) + w * cuts.to(unary.dtype)


def grid_potts_gibbs(model: PairwiseModel, num_samples: int, *, num_chains: int = 64, burn_in: int = 500,
                     thinning: int = 2, seed: int = 0, keep_samples: bool | None = None) -> GibbsResult:
    """:class:`GibbsSampler`'s chain for a grid Potts model, vectorised on the pixel grid (module docstring).

    Same retained samples per chain, streamed statistics and ``keep_samples`` rule as :meth:`GibbsSampler.sample`.
    """
    w = potts_coupling(model)
    if w is None:
        raise ValueError("grid_potts_gibbs needs a grid Potts model (see potts_coupling)")
    num_samples = check_int("num_samples", num_samples, minimum=1)
    chains = min(check_int("num_chains", num_chains, minimum=1), num_samples)
    t0 = time.perf_counter()
    rows, cols = model.grid_shape
    c = model.num_labels
    needed = -(-num_samples // chains)
    keep = _keep(keep_samples, num_samples, chains * needed, rows * cols)
    gen = torch.Generator(device=model.device).manual_seed(seed)
    logits0 = -model.unary.T.reshape(1, c, rows, cols).float()
    state = torch.randint(c, (chains, rows, cols), generator=gen, device=model.device)
    labels = torch.arange(c, device=model.device)[:, None, None]
    parity = (torch.arange(rows)[:, None] + torch.arange(cols)[None, :]).to(model.device) % 2
    stream = _Stream(chains, needed, rows * cols, c, keep, model.device)
    total = burn_in + needed * thinning
    changed = 0
    for sweep in range(total):
        for colour in (0, 1):
            onehot = (state[:, None] == labels).float()  # (B, c, H, W), without one_hot's int64 (B, H, W, c)
            logits = logits0 + w * _neighbour_counts(onehot)
            del onehot
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
    return GibbsResult(chain_counts=stream.counts, chain_energy=stream.energy / needed,
                       final=state.reshape(chains, -1), num_chains=chains, samples_per_chain=needed, sweeps=total,
                       acceptance=changed / max(1, total * chains * rows * cols), seconds=time.perf_counter() - t0,
                       kept=stream.kept, requested=num_samples)
