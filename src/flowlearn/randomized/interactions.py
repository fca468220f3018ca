r"""The structure of the random interaction :math:`\Omega` of a randomized S-flow, as strategy objects.

:class:`~flowlearn.randomized.sflow.RandomizedAssignmentFlow` draws :math:`Z = \mu + \sigma \odot \xi`
with parameters of shape :meth:`Interaction.parameter_shape`; the interaction gives :math:`\Omega`
(:meth:`Interaction.omega`), :math:`\Omega S` (:meth:`Interaction.apply`) and the geometric Euler loop
(:meth:`Interaction.integrate`).  Four structures (paper 001, Sect. 3 and 5):

* :class:`NodeInteraction` -- :math:`\Omega = \max(Z + Z^\top, 0) + \varepsilon I \in \mathbb{R}^{n\times n}`
  acting as :math:`\Omega \otimes I_c` (eq. (2), the Table 1 setting; Thm. 1 guarantees convergence);
* :class:`LabelInteraction` -- the same with full :math:`\Omega \in \mathbb{R}^{nc\times nc}` (eq. (3));
* :class:`ConvInteraction` -- a random kernel :math:`K \in \mathbb{R}^{c\times c\times k\times k}` on an image
  grid (Fig. 1), symmetrised as :math:`K_{ab}(d) + K_{ba}(-d)` (the adjoint of a zero-padded convolution),
  clipped at 0, plus :math:`\varepsilon` on the centre tap of each channel;
* :class:`SparseInteraction` -- the dense node interaction with :math:`Z` restricted to a graph's undirected
  edges and self loops: :math:`\Omega_{ij} = \max(Z_{ij} + Z_{ji}, 0)`, :math:`\Omega_{ii} = \max(2 Z_{ii}, 0)
  + \varepsilon`, stored as ``(B, E + n)`` (edge weights, then the diagonal); :math:`\Omega S` costs
  :math:`O(B\,|E|\,c)`.

Degree scaling (``drive_scale="degree"``, node and sparse): the consensus drive :math:`\sum_j \Omega_{ij} S_j`
grows with a node's degree, so the off-diagonal entries are multiplied by :math:`d_0 / \sqrt{d_i d_j}` (``n - 1``
for the dense variant, :math:`d_0 =` :data:`REFERENCE_DEGREE`), which commutes with the clipping (Thm. 1 holds).
The objects are frozen dataclasses: part of a training run's identity.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass

import torch

from .._checks import UserInputError, UserTypeError, check_choice, check_int
from ..geometry import log_lift
from ..pgm.models import integer_tensor

__all__ = ["ConvInteraction", "DRIVE_SCALES", "Interaction", "LabelInteraction", "NodeInteraction", "REFERENCE_DEGREE",
           "SparseInteraction", "per_sample_conv2d", "sparse_pattern"]

#: Degree whose drive the scaled interaction reproduces (a 4-neighbour grid node).
REFERENCE_DEGREE = 4
#: Values of ``drive_scale``: ``"none"`` or ``"degree"`` (off-diagonal entries times :math:`d_0/\sqrt{d_i d_j}`).
DRIVE_SCALES = ("none", "degree")


class Interaction(abc.ABC):
    """The structure of :math:`\\Omega`; the methods receive the flow (``epsilon``, ``step_size``, ``num_steps``,
    dtype, device and the buffers of :meth:`setup`)."""

    def setup(self, num_nodes: int, num_labels: int, *, dtype, device) -> dict:
        """Check the interaction against the flow's sizes; return the fixed tensors the flow keeps as buffers."""
        return {}

    @abc.abstractmethod
    def parameter_shape(self, num_nodes: int, num_labels: int) -> tuple:
        """Shape of the mean and log-variance of :math:`Z`."""

    @abc.abstractmethod
    def omega(self, flow, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega` from draws ``z`` of :math:`Z`, shape ``(B,) + parameter_shape``."""

    @abc.abstractmethod
    def apply(self, flow, omega: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega S` for a batch ``s`` (B, n, c)."""

    def integrate(self, flow, omega: torch.Tensor, log_s0: torch.Tensor) -> torch.Tensor:
        r"""Geometric Euler :math:`\log S \leftarrow \log\exp_S(h\,\Omega S)`, ``flow.num_steps`` times."""
        log_s = log_s0
        for _ in range(flow.num_steps):
            log_s = log_lift(log_s, flow.step_size * self.apply(flow, omega, log_s.exp()))
        return log_s


def _dense_omega(flow, z: torch.Tensor, scaled: bool) -> torch.Tensor:
    eye = torch.eye(z.shape[-1], dtype=flow.dtype, device=flow.device)
    omega = torch.relu(z + z.transpose(-1, -2))
    if scaled:
        omega = omega * flow.off_diagonal_scale
    return omega + flow.epsilon * eye


@dataclass(frozen=True)
class NodeInteraction(Interaction):
    r"""Dense :math:`\Omega \in \mathbb{R}^{n\times n}` acting as :math:`\Omega \otimes I_c` (the paper's);
    ``drive_scale="degree"`` multiplies the off-diagonal entries by :math:`4/(n - 1)` (module docstring)."""

    drive_scale: str = "none"

    def __post_init__(self):
        check_choice("drive_scale", self.drive_scale, DRIVE_SCALES)

    def setup(self, num_nodes, num_labels, *, dtype, device) -> dict:
        if self.drive_scale != "degree":
            return {}
        scale = torch.full((num_nodes, num_nodes), REFERENCE_DEGREE / max(num_nodes - 1, 1), dtype=dtype, device=device)
        return {"off_diagonal_scale": scale.fill_diagonal_(1.0)}

    def parameter_shape(self, num_nodes, num_labels) -> tuple:
        return (num_nodes, num_nodes)

    def omega(self, flow, z):
        return _dense_omega(flow, z, self.drive_scale == "degree")

    def apply(self, flow, omega, s):
        return omega @ s


@dataclass(frozen=True)
class LabelInteraction(Interaction):
    r"""Full :math:`\Omega \in \mathbb{R}^{nc\times nc}` (eq. (3))."""

    def parameter_shape(self, num_nodes, num_labels) -> tuple:
        return (num_nodes * num_labels, num_nodes * num_labels)

    def omega(self, flow, z):
        return _dense_omega(flow, z, False)

    def apply(self, flow, omega, s):
        return (omega @ s.reshape(s.shape[0], -1, 1)).reshape(s.shape)


@dataclass(frozen=True)
class ConvInteraction(Interaction):
    r"""A random multi-channel convolution with an odd ``kernel_size`` on a ``grid_shape = (rows, cols)`` image
    (``rows * cols`` must equal the flow's ``num_nodes``, nodes in row-major order)."""

    grid_shape: tuple
    kernel_size: int = 3

    def __post_init__(self):
        try:
            rows, cols = (int(v) for v in self.grid_shape)
        except (TypeError, ValueError) as exc:
            raise UserTypeError(f"grid_shape must be (rows, cols), got {self.grid_shape!r}") from exc
        if rows < 1 or cols < 1:
            raise UserInputError(f"grid_shape must be positive, got {(rows, cols)}")
        object.__setattr__(self, "grid_shape", (rows, cols))
        check_int("kernel_size", self.kernel_size, minimum=1, odd=True)

    def setup(self, num_nodes, num_labels, *, dtype, device) -> dict:
        if self.grid_shape[0] * self.grid_shape[1] != num_nodes:
            raise UserInputError(f"grid_shape {self.grid_shape} does not match num_nodes = {num_nodes}")
        return {}

    def parameter_shape(self, num_nodes, num_labels) -> tuple:
        return (num_labels, num_labels, self.kernel_size, self.kernel_size)

    def omega(self, flow, z):
        kernel = torch.relu(z + z.transpose(1, 2).flip(-1, -2))
        centre = self.kernel_size // 2
        eye = torch.eye(flow.num_labels, dtype=flow.dtype, device=flow.device)
        return kernel + flow.epsilon * torch.nn.functional.pad(eye[:, :, None, None], (centre, centre, centre, centre))

    def apply(self, flow, omega, s):
        B, n, c = s.shape
        rows, cols = self.grid_shape
        k = self.kernel_size
        img = s.reshape(B, rows, cols, c).permute(0, 3, 1, 2).reshape(1, B * c, rows, cols)
        out = per_sample_conv2d(img, omega.reshape(B * c, c, k, k), B, k // 2)
        return out.reshape(B, c, rows, cols).permute(0, 2, 3, 1).reshape(B, n, c)

    def integrate(self, flow, omega, log_s0):
        """The Euler loop in the label-major layout (B, c, H, W): no permutes per step, :func:`per_sample_conv2d`
        and ``log_softmax`` over the label axis."""
        B, n, c = log_s0.shape
        rows, cols = self.grid_shape
        k = self.kernel_size
        x = log_s0.reshape(B, rows, cols, c).permute(0, 3, 1, 2).reshape(1, B * c, rows, cols)
        w = omega.reshape(B * c, c, k, k)
        for _ in range(flow.num_steps):
            y = (x + flow.step_size * per_sample_conv2d(x.exp(), w, B, k // 2)).reshape(B, c, rows, cols)
            x = torch.log_softmax(y, 1).reshape(1, B * c, rows, cols)
        return x.reshape(B, c, rows, cols).permute(0, 2, 3, 1).reshape(B, n, c)


def sparse_pattern(edges) -> torch.Tensor:
    """Undirected, de-duplicated edges ``(E, 2)`` with ``i < j`` (self loops dropped) of ``edges``, on the CPU."""
    edges = integer_tensor("edges", edges, "an integer array of shape (E, 2)")
    if edges.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.long)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise UserInputError(f"edges must have shape (E, 2), got {tuple(edges.shape)}")
    edges = edges.long().cpu()
    if int(edges.min()) < 0:
        raise UserInputError(f"edges must index nodes (values >= 0), got minimum {int(edges.min())}")
    lo, hi = edges.min(1).values, edges.max(1).values
    keep = lo != hi
    return torch.unique(torch.stack([lo[keep], hi[keep]], 1), dim=0).reshape(-1, 2)


@dataclass(frozen=True, eq=False, repr=False)
class SparseInteraction(Interaction):
    r"""The node interaction on a graph's edges and self loops (:math:`O(B\,|E|)` memory, any graph).

    ``edges`` (E, 2) may hold duplicates, both orientations and self loops; it is kept as its undirected,
    de-duplicated pattern (:func:`sparse_pattern`), e.g. ``SparseInteraction(model.edges)``.
    ``drive_scale="degree"`` multiplies the edge weights by :math:`4/\sqrt{d_i d_j}` (module docstring).
    """

    edges: torch.Tensor
    drive_scale: str = "none"

    def __post_init__(self):
        object.__setattr__(self, "edges", sparse_pattern(self.edges))
        check_choice("drive_scale", self.drive_scale, DRIVE_SCALES)

    @property
    def num_edges(self) -> int:
        return int(self.edges.shape[0])

    def __eq__(self, other):
        return (type(other) is type(self) and self.drive_scale == other.drive_scale
                and torch.equal(self.edges, other.edges))

    def __hash__(self):
        return hash((type(self), self.drive_scale, tuple(self.edges.shape)))

    def __repr__(self):
        return f"SparseInteraction(<{self.num_edges} edges>, drive_scale={self.drive_scale!r})"

    def setup(self, num_nodes, num_labels, *, dtype, device) -> dict:
        pattern = self.edges
        if pattern.numel() and int(pattern.max()) >= num_nodes:
            raise UserInputError(f"edges must index nodes in [0, {num_nodes - 1}], got values in "
                                 f"[{int(pattern.min())}, {int(pattern.max())}]")
        pattern = pattern.to(device)
        out = {"edges": pattern}
        if self.drive_scale == "degree":
            deg = torch.bincount(pattern.reshape(-1), minlength=num_nodes).to(dtype).clamp_min(1.0)
            out["off_diagonal_scale"] = REFERENCE_DEGREE / torch.sqrt(deg[pattern[:, 0]] * deg[pattern[:, 1]])
        return out

    def parameter_shape(self, num_nodes, num_labels) -> tuple:
        return (2 * self.num_edges + num_nodes,)

    def omega(self, flow, z):
        m = self.num_edges
        w = torch.relu(z[:, :m] + z[:, m:2 * m])
        if self.drive_scale == "degree":
            w = w * flow.off_diagonal_scale
        return torch.cat([w, torch.relu(2 * z[:, 2 * m:]) + flow.epsilon], 1)

    def apply(self, flow, omega, s):
        m = self.num_edges
        i, j = flow.edges[:, 0], flow.edges[:, 1]
        w = omega[:, :m, None]
        out = omega[:, m:, None] * s
        return out.index_add(1, i, w * s[:, j]).index_add(1, j, w * s[:, i])


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
    r"""``conv2d(x, w, padding=padding, groups=groups)`` for ``x`` (1, B*c, H, W) and ``w`` (B*c, c, k, k) -- one
    kernel per sample, the batch folded into the groups -- differentiable in both arguments.  On the CPU it runs
    on ATen's native kernels (oneDNN handles such grouped convolutions about 2.5 times slower)."""
    if x.device.type != "cpu":
        return torch.nn.functional.conv2d(x, w, padding=padding, groups=groups)
    return _PerSampleConv.apply(x, w, groups, padding)
