r"""Randomized S-flows (paper 001, Sect. 3 and 5; formulas.md §5).

The S-flow :math:`\dot S = R_S(\Omega S)`, :math:`S(0) = S_0` (eq. (2)), vectorised with label
interaction :math:`\Omega \in \mathbb{R}^{nc\times nc}` (eq. (3)), is integrated by the geometric
Euler scheme :math:`S \leftarrow \exp_S(h\,\Omega S) = \mathrm{softmax}(\log S + h\,\Omega S)`
(computed in the log domain with :func:`flowlearn.geometry.log_lift`).

The interaction is random (Thm. 1): :math:`\Omega = \max(Z + Z^\top, 0) + \varepsilon I` with
Gaussian :math:`Z = \mu + \sigma \odot \xi`, :math:`\xi \sim N(0, I)` (reparameterisation trick),
learned mean :math:`\mu` and component-wise variance :math:`\sigma^2`.  The flow limit is an
integer labeling for every draw, so the flow defines a distribution :math:`P^\infty` over
configurations (eq. (7)); samples are the rounded end points ``argmax S(T)``.

Interaction structures (``interaction=``):

* ``"node"`` -- :math:`\Omega \in \mathbb{R}^{n\times n}` acting as :math:`\Omega \otimes I_c`
  (eq. (2), the Table 1 setting; Thm. 1 guarantees convergence);
* ``"label"`` -- full :math:`\Omega \in \mathbb{R}^{nc\times nc}` (eq. (3));
* ``"conv"`` -- multi-channel convolution on an image grid (Fig. 1): a random kernel
  :math:`K \in \mathbb{R}^{c\times c\times k\times k}`, symmetrised as
  :math:`K_{ab}(d) + K_{ba}(-d)` (the adjoint of a zero-padded convolution), clipped at 0,
  plus :math:`\varepsilon` on the centre tap of each channel;
* ``"sparse"`` -- the node interaction restricted to the model's graph (``edges``: edges and
  self loops, :math:`O(B\,|E|)` memory, any graph; see :mod:`.interactions`).

``drive_scale="degree"`` (node and sparse) scales the off-diagonal entries by
:math:`4/\sqrt{d_i d_j}`, so the consensus drive does not grow with ``n``.

Beyond the paper, the initial point can be random too,
:math:`S_0 = \mathrm{softmax}(\nu + \tau\odot\zeta + \sum_{r} U_r \eta_r)` with
:math:`\zeta \sim N(0, I_{nc})`, :math:`\eta \sim N(0, I_{R})` and learned :math:`\nu` (always),
:math:`\tau` (``init_noise > 0``) and the low-rank factors :math:`U_r \in \mathbb{R}^{n\times c}`
(``init_rank = R > 0``).  A few shared Gaussian factors make coherent, far-apart modes (e.g. the
position of a domain wall) cheap to represent; the flow then turns the initial point into an
integer labeling.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import (
    UserInputError,
    check_choice,
    check_int,
    check_positive,
)
from ..geometry import log_lift
from .interactions import DEFAULT_SAMPLING_MEMORY, degree_scale, per_sample_conv2d, sparse_pattern
from .sampling import FlowSampling

__all__ = ["RandomizedAssignmentFlow", "INTERACTIONS"]

INTERACTIONS = ("node", "label", "conv", "sparse")


class RandomizedAssignmentFlow(FlowSampling, nn.Module):
    r"""S-flow with random interaction matrix and learned initialisation.

    Parameters
    ----------
    num_nodes, num_labels : int
        ``n`` and ``c``.
    interaction : {"node", "label", "conv", "sparse"}
        Structure of :math:`\Omega` (see module docstring).
    edges : (E, 2) integer tensor, optional
        The graph of ``interaction="sparse"`` (duplicates, both orientations and self loops allowed).
    drive_scale : {"none", "degree"}
        ``"degree"``: off-diagonal entries times :math:`4/\sqrt{d_i d_j}` (node and sparse only).
    sampling_memory : int
        Bytes per sampling chunk when no ``chunk_size`` is given (default 256 MiB).
    grid_shape : (rows, cols), optional
        Required for ``interaction="conv"``; ``rows * cols == num_nodes``.
    kernel_size : int
        Odd kernel size of the convolutional interaction.
    step_size, end_time : float
        Geometric Euler step ``h`` and horizon ``T`` (paper: 0.1 and 1.0).
    epsilon : float
        :math:`\varepsilon` of Thm. 1 (paper: 1e-3).
    mean_init, variance_init : float
        Initial mean (all entries) and component-wise variance of ``Z`` (paper: 1/20 and 0.1).
    init_noise : float
        Initial standard deviation of the random initial logits (0: deterministic learned
        :math:`S_0`, as in the paper).
    init_rank : int
        Number of learned low-rank Gaussian factors of the initial logits (0: none, as in
        the paper).  They start at ``init_factor_scale * N(0, 1)`` drawn from a generator
        seeded with 0, so construction is deterministic.
    init_factor_scale : float
    initial_logits : tensor (n, c), optional
        Starting value of the learned mean initial logits :math:`\nu` (default 0, the
        barycenter; a fixed point of the flow unless some noise is present).  E.g.
        ``-0.5 * model.unary`` starts from the data term.
    initial_factors : tensor (init_rank, n, c), optional
        Starting value of the low-rank factors (default: ``init_factor_scale * N(0, 1)``).
    dtype, device
        Of the parameters; samples are drawn on this device.
    """

    def __init__(self, num_nodes: int, num_labels: int, *, interaction: str = "node",
                 grid_shape: tuple[int, int] | None = None, kernel_size: int = 3, step_size: float = 0.1,
                 end_time: float = 1.0, epsilon: float = 1e-3, mean_init: float = 0.05,
                 variance_init: float = 0.1, init_noise: float = 0.0, init_rank: int = 0,
                 init_factor_scale: float = 0.1, initial_logits=None, initial_factors=None, dtype=None,
                 device=None, edges=None, drive_scale: str = "none", sampling_memory: int = DEFAULT_SAMPLING_MEMORY):
        super().__init__()
        self.num_nodes = check_int("num_nodes", num_nodes, minimum=1)
        self.num_labels = check_int("num_labels", num_labels, minimum=2)
        check_choice("interaction", interaction, INTERACTIONS)
        self.interaction = interaction
        self.kernel_size = check_int("kernel_size", kernel_size, minimum=1, odd=True)
        self.step_size = check_positive("step_size", step_size)
        self.end_time = check_positive("end_time", end_time)
        self.num_steps = max(1, int(round(self.end_time / self.step_size)))
        self.epsilon = check_positive("epsilon", epsilon)
        self.variance_init = check_positive("variance_init", variance_init)
        self.init_noise = check_positive("init_noise", init_noise, strict=False)
        self.init_rank = check_int("init_rank", init_rank, minimum=0)
        self.init_factor_scale = check_positive("init_factor_scale", init_factor_scale)
        mean_init = float(mean_init)
        if not math.isfinite(mean_init):
            raise UserInputError(f"mean_init must be finite, got {mean_init!r}")
        self.mean_init = mean_init
        check_choice("drive_scale", drive_scale, ("none", "degree"))
        self.drive_scale = drive_scale
        self.sampling_memory = check_int("sampling_memory", sampling_memory, minimum=1)
        if interaction == "conv":
            if grid_shape is None:
                raise UserInputError("grid_shape=(rows, cols) is required for interaction='conv'")
            rows, cols = (int(v) for v in grid_shape)
            if rows * cols != self.num_nodes:
                raise UserInputError(f"grid_shape {tuple(grid_shape)} does not match num_nodes = {self.num_nodes}")
            self.grid_shape = (rows, cols)
        else:
            self.grid_shape = None if grid_shape is None else tuple(int(v) for v in grid_shape)
        n, c, k = self.num_nodes, self.num_labels, self.kernel_size
        factory = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        pattern = sparse_pattern(edges, n, device) if interaction == "sparse" else None
        if pattern is not None:
            self.register_buffer("edges", pattern, persistent=False)
        self.num_edges = 0 if pattern is None else pattern.shape[0]
        shape = {"node": (n, n), "label": (n * c, n * c), "conv": (c, c, k, k),
                 "sparse": (2 * self.num_edges + n,)}[interaction]
        if drive_scale == "degree":
            self.register_buffer("off_diagonal_scale", degree_scale(interaction, n, pattern, **factory),
                                 persistent=False)
        self.interaction_mean = nn.Parameter(torch.full(shape, mean_init, **factory))
        self.interaction_log_variance = nn.Parameter(torch.full(shape, math.log(self.variance_init), **factory))
        if initial_logits is None:
            start = torch.zeros(n, c, **factory)
        else:
            start = torch.as_tensor(initial_logits).to(**factory).clone()
            if tuple(start.shape) != (n, c) or not bool(torch.isfinite(start).all()):
                raise UserInputError(f"initial_logits must be a finite tensor of shape ({n}, {c}), got shape "
                                 f"{tuple(start.shape)}")
        self.init_logits = nn.Parameter(start)
        if self.init_noise > 0:
            self.init_log_std = nn.Parameter(torch.full((n, c), math.log(self.init_noise), **factory))
        if self.init_rank > 0:
            if initial_factors is None:
                factors = self.init_factor_scale * torch.randn(self.init_rank, n, c, dtype=factory["dtype"],
                                                               generator=torch.Generator().manual_seed(0))
            else:
                factors = torch.as_tensor(initial_factors).to(dtype=factory["dtype"]).clone()
                if tuple(factors.shape) != (self.init_rank, n, c) or not bool(torch.isfinite(factors).all()):
                    raise UserInputError(f"initial_factors must be a finite tensor of shape ({self.init_rank}, {n}, {c}),"
                                     f" got shape {tuple(factors.shape)}")
            self.init_factors = nn.Parameter(factors.to(device))

    # ------------------------------------------------------------------ helpers
    @property
    def dtype(self) -> torch.dtype:
        return self.init_logits.dtype

    @property
    def device(self) -> torch.device:
        return self.init_logits.device

    def _noise(self, shape, generator) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=self.dtype, device=self.device)

    def sample_interaction(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Draw ``batch`` interactions :math:`\Omega` (differentiable in mean and variance).

        Returns shape ``(B, n, n)`` (node), ``(B, nc, nc)`` (label) or the symmetrised,
        clipped kernels ``(B, c, c, k, k)`` (conv).
        """
        mean, log_var = self.interaction_mean, self.interaction_log_variance
        z = mean + torch.exp(0.5 * log_var) * self._noise((batch,) + tuple(mean.shape), generator)
        return self.interaction_from_z(z)

    def interaction_from_z(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega` from draws ``z`` of :math:`Z` (shape ``(B,) + interaction_mean.shape``).

        Sparse: ``z`` holds :math:`Z_{ij}` on the edges, then :math:`Z_{ji}`, then :math:`Z_{ii}`;
        the result ``(B, E + n)`` holds the edge weights, then the diagonal.
        """
        if self.interaction == "sparse":
            m = self.num_edges
            w = torch.relu(z[:, :m] + z[:, m:2 * m])
            if self.drive_scale == "degree":
                w = w * self.off_diagonal_scale
            return torch.cat([w, torch.relu(2 * z[:, 2 * m:]) + self.epsilon], 1)
        if self.interaction == "conv":
            sym = z + z.transpose(1, 2).flip(-1, -2)
            kernel = torch.relu(sym)
            centre = self.kernel_size // 2
            eye = torch.eye(self.num_labels, dtype=self.dtype, device=self.device)
            return kernel + self.epsilon * torch.nn.functional.pad(
                eye[:, :, None, None], (centre, centre, centre, centre))
        eye = torch.eye(z.shape[-1], dtype=self.dtype, device=self.device)
        omega = torch.relu(z + z.transpose(-1, -2))
        if self.drive_scale == "degree":
            omega = omega * self.off_diagonal_scale
        return omega + self.epsilon * eye

    def apply_interaction(self, omega: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega S` for a batch: ``omega`` from :meth:`sample_interaction`, ``s`` (B, n, c)."""
        B, n, c = s.shape
        if self.interaction == "node":
            return omega @ s
        if self.interaction == "label":
            return (omega @ s.reshape(B, n * c, 1)).reshape(B, n, c)
        if self.interaction == "sparse":
            m = self.num_edges
            i, j = self.edges[:, 0], self.edges[:, 1]
            w = omega[:, :m, None]
            out = omega[:, m:, None] * s
            return out.index_add(1, i, w * s[:, j]).index_add(1, j, w * s[:, i])
        rows, cols = self.grid_shape
        img = s.reshape(B, rows, cols, c).permute(0, 3, 1, 2).reshape(1, B * c, rows, cols)
        out = per_sample_conv2d(img, omega.reshape(B * c, c, self.kernel_size, self.kernel_size), B,
                                self.kernel_size // 2)
        return out.reshape(B, c, rows, cols).permute(0, 2, 3, 1).reshape(B, n, c)

    def initial_log_point(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        r""":math:`\log S_0`, shape (B, n, c) (random when ``init_noise > 0`` or ``init_rank > 0``)."""
        logits = self.init_logits.expand(batch, -1, -1)
        if self.init_noise > 0:
            logits = logits + torch.exp(self.init_log_std) * self._noise(logits.shape, generator)
        if self.init_rank > 0:
            eta = self._noise((batch, self.init_rank), generator)
            logits = logits + torch.einsum("br,rnc->bnc", eta, self.init_factors)
        return torch.log_softmax(logits, -1)

    def integrate(self, omega: torch.Tensor, log_s0: torch.Tensor) -> torch.Tensor:
        r"""Geometric Euler :math:`\log S \leftarrow \log\exp_S(h\,\Omega S)`, ``num_steps`` times."""
        if self.interaction == "conv":
            return self._integrate_conv(omega, log_s0)
        log_s = log_s0
        for _ in range(self.num_steps):
            log_s = log_lift(log_s, self.step_size * self.apply_interaction(omega, log_s.exp()))
        return log_s

    def _integrate_conv(self, omega: torch.Tensor, log_s0: torch.Tensor) -> torch.Tensor:
        """:meth:`integrate` for the conv interaction in the label-major layout (B, c, H, W): no permutes
        per step, the per-sample convolution on ATen's native kernels (:func:`.per_sample_conv2d`) and
        ``log_softmax`` over the small label axis (3x faster than a hand-written log-sum-exp)."""
        B, n, c = log_s0.shape
        rows, cols = self.grid_shape
        k = self.kernel_size
        x = log_s0.reshape(B, rows, cols, c).permute(0, 3, 1, 2).reshape(1, B * c, rows, cols)
        w = omega.reshape(B * c, c, k, k)
        for _ in range(self.num_steps):
            y = (x + self.step_size * per_sample_conv2d(x.exp(), w, B, k // 2)).reshape(
                B, c, rows, cols)
            x = torch.log_softmax(y, 1).reshape(1, B * c, rows, cols)
        return x.reshape(B, c, rows, cols).permute(0, 2, 3, 1).reshape(B, n, c)

    # ------------------------------------------------------------------ public API
    def forward(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Soft end points :math:`\log S^l(T)`, shape (num_samples, n, c); differentiable."""
        num_samples = check_int("num_samples", num_samples, minimum=1)
        omega = self.sample_interaction(num_samples, generator)
        return self.integrate(omega, self.initial_log_point(num_samples, generator))
