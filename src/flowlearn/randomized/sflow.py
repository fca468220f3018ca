r"""Randomized S-flows (paper 001, Sect. 3 and 5; formulas.md §5).

The S-flow :math:`\dot S = R_S(\Omega S)`, :math:`S(0) = S_0` (eq. (2)) is integrated by the geometric Euler
scheme :math:`S \leftarrow \exp_S(h\,\Omega S) = \mathrm{softmax}(\log S + h\,\Omega S)` in the log domain.
The interaction is random (Thm. 1): :math:`\Omega = \max(Z + Z^\top, 0) + \varepsilon I` with Gaussian
:math:`Z = \mu + \sigma \odot \xi`, :math:`\xi \sim N(0, I)` (reparameterisation trick), learned mean
:math:`\mu` and component-wise variance :math:`\sigma^2`; its structure is a strategy object
(:mod:`.interactions`).  The flow limit is an integer labeling for every draw, so the flow defines a
distribution :math:`P^\infty` over configurations (eq. (7)).

Beyond the paper, the initial point can be random too, :math:`S_0 = \mathrm{softmax}(\nu + \tau\odot\zeta +
\sum_{r} U_r \eta_r)` with Gaussian :math:`\zeta, \eta`, learned :math:`\nu`, :math:`\tau` (``init_noise > 0``) and
low-rank factors :math:`U_r` (``init_rank = R > 0``) that make coherent, far-apart modes cheap to represent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import UserInputError, UserTypeError, check_int, check_positive
from ..engine.identity import record_hparams
from .interactions import Interaction, NodeInteraction
from .sampling import DEFAULT_SAMPLING_MEMORY, FlowSampling

__all__ = ["RandomizedAssignmentFlow"]


def _given(name: str, value, shape: tuple, dtype) -> torch.Tensor:
    """A copy of ``value`` in ``dtype``, after checking its shape and finiteness."""
    t = torch.as_tensor(value).to(dtype=dtype).clone()
    if tuple(t.shape) != shape or not bool(torch.isfinite(t).all()):
        raise UserInputError(f"{name} must be a finite tensor of shape {shape}, got shape {tuple(t.shape)}")
    return t


class RandomizedAssignmentFlow(FlowSampling, nn.Module):
    r"""S-flow with random interaction matrix and learned initialisation.

    Every constructor argument is recorded in ``hparams`` (part of a training run's identity).

    Parameters
    ----------
    num_nodes, num_labels : int
        ``n`` and ``c``.
    interaction : Interaction
        Structure of :math:`\Omega`: ``NodeInteraction()``, ``LabelInteraction()``,
        ``ConvInteraction(grid_shape, kernel_size)`` or ``SparseInteraction(edges, drive_scale)``.
    step_size, end_time : float
        Geometric Euler step ``h`` and horizon ``T`` (the paper's values are the defaults).
    epsilon : float
        :math:`\varepsilon` of Thm. 1.
    mean_init, variance_init : float
        Initial mean (all entries) and component-wise variance of ``Z``.
    init_noise : float
        Initial standard deviation of the random initial logits (0: deterministic :math:`S_0`, as in the paper).
    init_rank : int
        Number of learned low-rank Gaussian factors of the initial logits (0: none, as in the paper).
    init_factor_scale : float
        The factors start at ``init_factor_scale * N(0, 1)``, drawn from a generator seeded with 0.
    initial_logits : tensor (n, c), optional
        Starting value of the mean initial logits :math:`\nu` (default 0, the barycenter), e.g.
        ``-0.5 * model.unary`` to start from the data term.
    initial_factors : tensor (R, n, c), optional
        Starting value of the ``R = init_rank`` low-rank factors.
    dtype, device
        Of the parameters; samples are drawn on this device.
    sampling_memory : int
        Bytes per sampling chunk when no ``chunk_size`` is given.
    """

    def __init__(self, num_nodes: int, num_labels: int, *, interaction: Interaction = NodeInteraction(),
                 step_size: float = 0.1, end_time: float = 1.0, epsilon: float = 1e-3, mean_init: float = 0.05,
                 variance_init: float = 0.1, init_noise: float = 0.0, init_rank: int = 0,
                 init_factor_scale: float = 0.1, initial_logits=None, initial_factors=None, dtype=None,
                 device=None, sampling_memory: int = DEFAULT_SAMPLING_MEMORY):
        super().__init__()
        record_hparams(self, locals())
        self.num_nodes = check_int("num_nodes", num_nodes, minimum=1)
        self.num_labels = check_int("num_labels", num_labels, minimum=2)
        if not isinstance(interaction, Interaction):
            raise UserTypeError(f"interaction must be an Interaction (NodeInteraction(), LabelInteraction(), "
                                f"ConvInteraction(grid_shape), SparseInteraction(edges)), got {interaction!r}")
        self.interaction = interaction
        self.step_size = check_positive("step_size", step_size)
        self.end_time = check_positive("end_time", end_time)
        self.num_steps = max(1, int(round(self.end_time / self.step_size)))
        self.epsilon = check_positive("epsilon", epsilon)
        self.variance_init = check_positive("variance_init", variance_init)
        self.init_noise = check_positive("init_noise", init_noise, strict=False)
        self.init_rank = check_int("init_rank", init_rank, minimum=0)
        self.init_factor_scale = check_positive("init_factor_scale", init_factor_scale)
        self.mean_init = mean_init = float(mean_init)
        if not math.isfinite(mean_init):
            raise UserInputError(f"mean_init must be finite, got {mean_init!r}")
        self.sampling_memory = check_int("sampling_memory", sampling_memory, minimum=1)
        n, c = self.num_nodes, self.num_labels
        factory = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        for name, tensor in interaction.setup(n, c, **factory).items():
            self.register_buffer(name, tensor, persistent=False)
        shape = interaction.parameter_shape(n, c)
        self.interaction_mean = nn.Parameter(torch.full(shape, mean_init, **factory))
        self.interaction_log_variance = nn.Parameter(torch.full(shape, math.log(self.variance_init), **factory))
        self.init_logits = nn.Parameter(torch.zeros(n, c, **factory) if initial_logits is None else
                                        _given("initial_logits", initial_logits, (n, c), factory["dtype"]).to(device))
        if self.init_noise > 0:
            self.init_log_std = nn.Parameter(torch.full((n, c), math.log(self.init_noise), **factory))
        if self.init_rank > 0:
            if initial_factors is None:
                factors = self.init_factor_scale * torch.randn(self.init_rank, n, c, dtype=factory["dtype"],
                                                               generator=torch.Generator().manual_seed(0))
            else:
                factors = _given("initial_factors", initial_factors, (self.init_rank, n, c), factory["dtype"])
            self.init_factors = nn.Parameter(factors.to(device))

    @property
    def dtype(self) -> torch.dtype:
        return self.init_logits.dtype

    @property
    def device(self) -> torch.device:
        return self.init_logits.device

    def _noise(self, shape, generator) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=self.dtype, device=self.device)

    def sample_interaction(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Draw ``batch`` interactions :math:`\Omega`, shape ``(B,) + interaction_mean.shape`` (differentiable in
        mean and variance)."""
        mean, log_var = self.interaction_mean, self.interaction_log_variance
        z = mean + torch.exp(0.5 * log_var) * self._noise((batch,) + tuple(mean.shape), generator)
        return self.interaction.omega(self, z)

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
        return self.interaction.integrate(self, omega, log_s0)

    def forward(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Soft end points :math:`\log S^l(T)`, shape (num_samples, n, c); differentiable."""
        num_samples = check_int("num_samples", num_samples, minimum=1)
        omega = self.sample_interaction(num_samples, generator)
        return self.integrate(omega, self.initial_log_point(num_samples, generator))
