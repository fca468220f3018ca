r"""Helpers of :class:`~flowlearn.randomized.sflow.RandomizedAssignmentFlow`: sparse interaction
patterns, the degree scaling of the consensus drive, sampling chunk sizes from a memory budget, and
the per-sample convolution of the conv interaction.

Sparse interaction (``interaction="sparse"``).  :math:`\Omega` lives on the model's graph: its
pattern is the undirected edges :math:`\{i, j\}` and the self loops.  The random matrix
:math:`Z` is kept only on that pattern, in both directions, so
:math:`\Omega_{ij} = \max(Z_{ij} + Z_{ji}, 0)` on an edge and
:math:`\Omega_{ii} = \max(2 Z_{ii}, 0) + \varepsilon`: exactly the dense node interaction
:math:`\max(Z + Z^\top, 0) + \varepsilon I` with :math:`Z` restricted to the pattern.  A draw is
stored as a vector ``(B, E + n)`` (edge weights, then the diagonal), and
:math:`\Omega S` costs :math:`O(B\,|E|\,c)` time and memory.

Degree scaling (``drive_scale="degree"``).  With a constant mean the consensus drive
:math:`\sum_j \Omega_{ij} S_j` of a node grows with its number of neighbours (about
:math:`0.23\,(n-1)` for the dense node interaction at the paper's initialisation).  The scaled
interaction multiplies the off-diagonal entries by the fixed factor
:math:`d_0 / \sqrt{d_i d_j}` (:math:`d_i` the number of neighbours in the pattern, ``n - 1`` for
the dense variant, :math:`d_0 =` :data:`REFERENCE_DEGREE` = 4, a grid node's degree), so the initial
drive is that of a 4-neighbour grid node whatever ``n`` and the graph are.  Scaling by a positive
constant commutes with the clipping, so Thm. 1 is unaffected.
"""

from __future__ import annotations

import contextlib

import torch

from .._checks import UserInputError, UserTypeError

__all__ = ["DEFAULT_SAMPLING_MEMORY", "REFERENCE_DEGREE", "degree_scale", "per_sample_bytes", "per_sample_conv2d",
           "sparse_pattern", "sampling_chunk_size"]

#: Degree whose drive the scaled interaction reproduces (a 4-neighbour grid node).
REFERENCE_DEGREE = 4
#: Default working-memory budget of one sampling chunk, in bytes (256 MiB).
DEFAULT_SAMPLING_MEMORY = 2**28
#: Largest chunk :meth:`RandomizedAssignmentFlow.sample` uses when no size is given.
MAX_CHUNK = 65536


def sparse_pattern(edges, num_nodes: int, device=None) -> torch.Tensor:
    """Undirected, de-duplicated edges ``(E, 2)`` with ``i < j`` (self loops dropped) of ``edges``."""
    if edges is None:
        raise UserInputError("edges (E, 2) are required for interaction='sparse'")
    if not isinstance(edges, torch.Tensor):
        try:
            edges = torch.as_tensor(edges)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserTypeError(f"edges must be an integer array of shape (E, 2), got {type(edges).__name__}") from exc
    if edges.dtype.is_floating_point or edges.dtype == torch.bool or edges.dtype.is_complex:
        raise UserTypeError(f"edges must be an integer tensor, got dtype {edges.dtype}")
    if edges.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.long, device=device)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise UserInputError(f"edges must have shape (E, 2), got {tuple(edges.shape)}")
    edges = edges.long().to(device)
    if int(edges.min()) < 0 or int(edges.max()) >= num_nodes:
        raise UserInputError(f"edges must index nodes in [0, {num_nodes - 1}], got values in "
                             f"[{int(edges.min())}, {int(edges.max())}]")
    lo, hi = edges.min(1).values, edges.max(1).values
    keep = lo != hi
    pairs = torch.unique(torch.stack([lo[keep], hi[keep]], 1), dim=0)
    return pairs.reshape(-1, 2)


def degree_scale(interaction: str, num_nodes: int, pattern: torch.Tensor | None, dtype, device) -> torch.Tensor:
    r"""Fixed off-diagonal factors :math:`d_0/\sqrt{d_i d_j}`: ``(n, n)`` for ``"node"``, ``(E,)`` for ``"sparse"``."""
    if interaction == "node":
        d = max(num_nodes - 1, 1)
        scale = torch.full((num_nodes, num_nodes), REFERENCE_DEGREE / d, dtype=dtype, device=device)
        return scale.fill_diagonal_(1.0)
    if interaction == "sparse":
        deg = torch.zeros(num_nodes, dtype=dtype, device=device)
        deg.index_add_(0, pattern.reshape(-1), torch.ones(pattern.numel(), dtype=dtype, device=device))
        deg = deg.clamp_min(1.0)
        return REFERENCE_DEGREE / torch.sqrt(deg[pattern[:, 0]] * deg[pattern[:, 1]])
    raise UserInputError(f"drive_scale='degree' needs interaction 'node' or 'sparse', got {interaction!r}")


def per_sample_bytes(num_parameters: int, num_nodes: int, num_labels: int, itemsize: int) -> int:
    """Working memory of one sample in :meth:`RandomizedAssignmentFlow.forward` (no grad): noise, Z and Omega
    (3 x the interaction's size) plus a few (n, c) states."""
    return itemsize * (3 * num_parameters + 8 * num_nodes * num_labels)


def sampling_chunk_size(num_parameters: int, num_nodes: int, num_labels: int, itemsize: int,
                        memory_bytes: int = DEFAULT_SAMPLING_MEMORY) -> int:
    """Samples per chunk so that one chunk needs at most ``memory_bytes`` (at least 1, at most 65536)."""
    per = per_sample_bytes(num_parameters, num_nodes, num_labels, itemsize)
    return int(max(1, min(MAX_CHUNK, memory_bytes // per)))


@contextlib.contextmanager
def _native_kernels():
    """Turn the oneDNN (mkldnn) convolution backend off for the block, and only that flag."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


class _PerSampleConv(torch.autograd.Function):
    """Grouped 2-D convolution on ATen's native kernels, forward and backward (see :func:`per_sample_conv2d`)."""

    @staticmethod
    def forward(ctx, x, w, groups: int, padding: int):
        with _native_kernels():
            out = torch.nn.functional.conv2d(x, w, padding=padding, groups=groups)
        ctx.save_for_backward(x, w)
        ctx.groups, ctx.padding = groups, padding
        return out

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        p = ctx.padding
        with _native_kernels():
            gx, gw, _ = torch.ops.aten.convolution_backward(
                grad.contiguous(), x, w, None, [1, 1], [p, p], [1, 1], False, [0, 0], ctx.groups,
                [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        return gx, gw, None, None


def per_sample_conv2d(x: torch.Tensor, w: torch.Tensor, groups: int, padding: int) -> torch.Tensor:
    r"""``conv2d(x, w, padding=padding, groups=groups)`` -- one kernel per sample, the batch folded into
    the groups -- differentiable in both arguments.

    On the CPU the oneDNN (mkldnn) backend handles such grouped convolutions with a few channels per
    group poorly: for 16 samples of 2 labels on a 256x256 grid it takes 75 ms forward and 180 ms
    forward plus backward, against 13-17 ms and about 70 ms on ATen's native kernels, which this
    function uses for both passes (the results agree to rounding).  Other devices are unaffected.

    Parameters
    ----------
    x : tensor (1, B*c, H, W)
    w : tensor (B*c, c, k, k)
    """
    if x.device.type != "cpu":
        return torch.nn.functional.conv2d(x, w, padding=padding, groups=groups)
    return _PerSampleConv.apply(x, w, groups, padding)
