"""Sampling, marginals and expectations of a randomized assignment flow (a mixin of
:class:`~flowlearn.randomized.sflow.RandomizedAssignmentFlow`), in chunks within a memory budget."""

from __future__ import annotations

from typing import Callable

import torch

from .._checks import UserInputError, UserTypeError, check_choice, check_int

__all__ = ["DEFAULT_SAMPLING_MEMORY", "ROUNDINGS", "FlowSampling", "categorical", "integral_fraction",
           "per_sample_bytes", "sampling_chunk_size"]

#: Roundings of soft end points; the first is the default of every scoring function.
ROUNDINGS = ("random", "argmax")
#: Default working-memory budget of one sampling chunk, in bytes (256 MiB).
DEFAULT_SAMPLING_MEMORY = 2**28
#: Largest chunk :meth:`FlowSampling.sample` uses when no size is given.
MAX_CHUNK = 65536


def per_sample_bytes(num_parameters: int, num_nodes: int, num_labels: int, itemsize: int) -> int:
    """Working memory of one sample in :meth:`RandomizedAssignmentFlow.forward` (no grad): noise, Z and Omega
    plus a few (n, c) states."""
    return itemsize * (3 * num_parameters + 8 * num_nodes * num_labels)


def sampling_chunk_size(num_parameters: int, num_nodes: int, num_labels: int, itemsize: int,
                        memory_bytes: int = DEFAULT_SAMPLING_MEMORY) -> int:
    """Samples per chunk so that one chunk needs at most ``memory_bytes`` (at least 1, at most 65536)."""
    per = per_sample_bytes(num_parameters, num_nodes, num_labels, itemsize)
    return int(max(1, min(MAX_CHUNK, memory_bytes // per)))


def categorical(probs: torch.Tensor, num_draws: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Independent draws from each row of ``probs`` (N, c) -> (N, num_draws) long, by inverse CDF: the law of
    ``torch.multinomial(probs, num_draws, replacement=True)`` (rows need not be normalised), several times faster
    for many short rows."""
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], num_draws, generator=generator, dtype=cdf.dtype, device=cdf.device)
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_max_(probs.shape[-1] - 1)


class FlowSampling:
    """Methods that only need ``forward(num_samples, generator) -> log S(T)`` and the flow's sizes."""

    def sampling_chunk_size(self, memory_bytes: int | None = None) -> int:
        """Samples per chunk within ``memory_bytes`` (default ``sampling_memory``) of working memory."""
        budget = self.sampling_memory if memory_bytes is None else check_int("memory_bytes", memory_bytes, minimum=1)
        return sampling_chunk_size(self.interaction_mean.numel(), self.num_nodes, self.num_labels,
                                   self.interaction_mean.element_size(), budget)

    def _chunks(self, num_samples: int, chunk_size: int | None):
        num_samples = check_int("num_samples", num_samples, minimum=1)
        chunk_size = self.sampling_chunk_size() if chunk_size is None else \
            check_int("chunk_size", chunk_size, minimum=1)
        for start in range(0, num_samples, chunk_size):
            yield min(chunk_size, num_samples - start)

    def round(self, log_s: torch.Tensor, rounding: str = "random",
              generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Integer configurations from soft end points ``log_s`` (B, n, c) -> (B, n) long.

        ``"argmax"``: the labeling the flow converges to (the limit model :math:`P^\infty`, eq. (7));
        ``"random"``: :math:`\alpha_i \sim S_i(T)` independently, an exact sample of the finite-time mixture
        :math:`P(T) = \mathbb{E}_\Omega[T(S(T))]` (eq. (6)) that the ``"score"`` objective fits.
        """
        check_choice("rounding", rounding, ROUNDINGS)
        if rounding == "argmax":
            return log_s.argmax(-1)
        B, n, c = log_s.shape
        return categorical(log_s.exp().reshape(B * n, c), 1, generator).reshape(B, n)

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None, *,
               rounding: str = "random", chunk_size: int | None = None) -> torch.Tensor:
        """Integer configurations, shape (num_samples, n), dtype long (chunked); see :meth:`round`."""
        return torch.cat([self.round(self.forward(b, generator), rounding, generator)
                          for b in self._chunks(num_samples, chunk_size)])

    @torch.no_grad()
    def marginals(self, num_samples: int, generator: torch.Generator | None = None, *,
                  rounding: str = "random", chunk_size: int | None = None) -> torch.Tensor:
        r"""Node marginals :math:`Q^\top P = \mathbb{E}_\Omega[S(\Omega)]` (eq. (24)), shape (n, c): of the soft end
        points for ``rounding="random"`` (:math:`P(T)`), of the rounded samples for ``"argmax"`` (:math:`P^\infty`).
        """
        check_choice("rounding", rounding, ROUNDINGS)
        total = torch.zeros(self.num_nodes, self.num_labels, dtype=self.dtype, device=self.device)
        for b in self._chunks(num_samples, chunk_size):
            log_s = self.forward(b, generator)
            if rounding == "argmax":
                total += torch.nn.functional.one_hot(log_s.argmax(-1), self.num_labels).to(self.dtype).sum(0)
            else:
                total += log_s.exp().sum(0)
        return total / num_samples

    @torch.no_grad()
    def expectation(self, fn: Callable[[torch.Tensor], torch.Tensor], num_samples: int,
                    generator: torch.Generator | None = None, *, rounding: str = "random",
                    chunk_size: int | None = None) -> torch.Tensor:
        r"""Monte-Carlo :math:`\mathbb{E}_P[f(\alpha)]` (...) over integer samples, ``fn`` mapping configurations
        (B, n) to (B, ...) (eq. (25) for :math:`f(\alpha) = \sum_i \phi_{i,\alpha_i}`)."""
        if not callable(fn):
            raise UserTypeError(f"fn must be callable, got {type(fn).__name__}")
        total = None
        for b in self._chunks(num_samples, chunk_size):
            values = torch.as_tensor(fn(self.round(self.forward(b, generator), rounding, generator)))
            if values.ndim == 0 or values.shape[0] != b:
                raise UserInputError(f"fn must return a tensor with leading dimension {b} (one value per "
                                 f"sample), got shape {tuple(values.shape)}")
            part = values.to(self.dtype).sum(0)
            total = part if total is None else total + part
        return total / num_samples


def integral_fraction(log_s: torch.Tensor, tolerance: float = 0.1) -> torch.Tensor:
    r"""Per soft sample ``(B, n, c)``: True where every node has :math:`\max_a S_{ia} \ge 1 -` ``tolerance``."""
    return log_s.amax(-1).amin(-1) >= float(torch.log1p(torch.tensor(-float(tolerance), dtype=torch.float64)))
