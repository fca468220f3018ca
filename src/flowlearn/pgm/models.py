r"""Discrete pairwise energy models (paper 001, eqs. (10)--(13)).

A configuration :math:`\alpha \in [c]^n` of the ``n`` nodes of a graph with edges ``(E, 2)`` has the energy
:math:`E_\alpha = \sum_{i} \theta^i[\alpha_i] + \sum_{e=(i,j)} \theta^{e}[\alpha_i, \alpha_j]` (tables indexed
``[label of i, label of j]``) and the Gibbs probability :math:`P^*_\alpha = \exp(-E_\alpha)/Z^*`.  A factorised
distribution :math:`T(q)` with node marginals ``q`` (n, c) has the tractable *mean-field energy*
:math:`\langle T(q), E\rangle = \sum_i \langle \theta^i, q_i\rangle + \sum_{e=(i,j)} q_i^\top \theta^e q_j`.
"""

from __future__ import annotations

import math

import torch

from .._checks import UserInputError, UserTypeError, as_tensor, check_finite, check_int, check_ndim, check_shape

__all__ = ["PairwiseModel", "check_number", "grid_edges", "integer_tensor", "ising_grid", "potts_grid"]


def check_number(name: str, value) -> float:
    """``float(value)`` after checking that ``value`` is a finite int or float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserInputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def integer_tensor(name: str, x, expected: str) -> torch.Tensor:
    """``x`` as a tensor of an integer dtype; :class:`UserTypeError` ``"{name} must be {expected}, got ..."`` else."""
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UserTypeError(f"{name} must be {expected}, got {type(x).__name__}") from exc
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise UserTypeError(f"{name} must be {expected}, got dtype {t.dtype}")
    return t


class PairwiseModel:
    r"""Pairwise (Potts-type) energy model on a graph.

    Parameters
    ----------
    unary : tensor, shape (n, c)
        Unary energies :math:`\theta^i[a]`.
    edges : integer tensor, shape (E, 2)
        Undirected edges ``(i, j)`` with ``i != j``; no duplicates.
    pairwise : tensor, shape (E, c, c) or (c, c)
        Pairwise energies :math:`\theta^e[a_i, a_j]`; a single ``(c, c)`` table is shared by all edges.
    grid_shape : tuple, optional
        ``(rows, cols)``, set by the grid constructors; node ``k`` is pixel ``(k // cols, k % cols)``.
    """

    def __init__(self, unary, edges, pairwise, *, grid_shape: tuple[int, int] | None = None):
        unary = as_tensor("unary", unary)
        check_ndim("unary", unary, (2,))
        n, c = unary.shape
        if n < 1 or c < 2:
            raise UserInputError(f"unary must have shape (n, c) with n >= 1 and c >= 2, got shape {tuple(unary.shape)}")
        check_finite("unary", unary)
        edges = integer_tensor("edges", edges, "an integer tensor")
        if edges.numel() == 0:
            edges = edges.reshape(0, 2)
        check_shape("edges", edges, (None, 2))
        edges = edges.to(device=unary.device, dtype=torch.long)
        if edges.numel() and (int(edges.min()) < 0 or int(edges.max()) >= n):
            raise UserInputError(f"edges must hold node indices in [0, {n - 1}], got range "
                             f"[{int(edges.min())}, {int(edges.max())}]")
        if bool((edges[:, 0] == edges[:, 1]).any()):
            raise UserInputError("edges must not contain self-loops (i, i)")
        key = torch.minimum(edges[:, 0], edges[:, 1]) * n + torch.maximum(edges[:, 0], edges[:, 1])
        if key.unique().numel() != key.numel():
            raise UserInputError("edges must not contain duplicate undirected edges")
        pairwise = as_tensor("pairwise", pairwise, dtype=unary.dtype, device=unary.device)
        if pairwise.ndim == 2:
            check_shape("pairwise", pairwise, (c, c))
            pairwise = pairwise.expand(edges.shape[0], c, c).clone()
        check_shape("pairwise", pairwise, (edges.shape[0], c, c))
        check_finite("pairwise", pairwise)
        if grid_shape is not None:
            rows, cols = (int(v) for v in grid_shape)
            if rows * cols != n:
                raise UserInputError(f"grid_shape {tuple(grid_shape)} does not match n = {n} nodes")
            grid_shape = (rows, cols)
        self.unary, self.edges, self.pairwise, self.grid_shape = unary, edges, pairwise, grid_shape

    @property
    def num_nodes(self) -> int:
        return self.unary.shape[0]

    @property
    def num_labels(self) -> int:
        return self.unary.shape[1]

    @property
    def num_edges(self) -> int:
        return self.edges.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.unary.dtype

    @property
    def device(self) -> torch.device:
        return self.unary.device

    def to(self, device=None, dtype=None) -> "PairwiseModel":
        """A copy on another device and/or floating dtype."""
        return PairwiseModel(self.unary.to(device=device, dtype=dtype), self.edges.to(device=device),
                             self.pairwise.to(device=device, dtype=dtype), grid_shape=self.grid_shape)

    def __repr__(self) -> str:
        grid = f", grid_shape={self.grid_shape}" if self.grid_shape else ""
        return f"PairwiseModel(n={self.num_nodes}, c={self.num_labels}, E={self.num_edges}{grid})"

    def check_configs(self, configs, name: str = "configs") -> torch.Tensor:
        """Validate integer configurations of shape ``(B, n)`` with labels in ``[0, c)``."""
        configs = integer_tensor(name, configs, "an integer tensor").to(self.device)
        check_shape(name, configs, (None, self.num_nodes))
        configs = configs.long()
        if configs.numel() and (int(configs.min()) < 0 or int(configs.max()) >= self.num_labels):
            raise UserInputError(f"{name} must hold labels in [0, {self.num_labels - 1}], got range "
                             f"[{int(configs.min())}, {int(configs.max())}]")
        return configs

    def energy(self, configs) -> torch.Tensor:
        r"""Energies :math:`E_\alpha` (B,) of integer configurations ``configs`` (B, n) (eq. (11))."""
        return self._energy_unchecked(self.check_configs(configs))

    def _energy_unchecked(self, configs: torch.Tensor) -> torch.Tensor:
        unary = self.unary.gather(1, configs.T).sum(0)  # (n, B) -> (B,)
        if self.num_edges == 0:
            return unary
        ai = configs[:, self.edges[:, 0]]  # (B, E)
        aj = configs[:, self.edges[:, 1]]
        eidx = torch.arange(self.num_edges, device=self.device)
        return unary + self.pairwise[eidx, ai, aj].sum(1)

    def mean_field_energy(self, q: torch.Tensor) -> torch.Tensor:
        r"""Expected energy :math:`\langle T(q), E\rangle` (...) of factorised distributions with node marginals
        ``q`` (..., n, c) (eq. (17); multilinear, so any real rows are accepted)."""
        if q.shape[-2:] != (self.num_nodes, self.num_labels):
            raise UserInputError(f"q must have shape (..., {self.num_nodes}, {self.num_labels}), "
                             f"got shape {tuple(q.shape)}")
        unary_table, pairwise = self._tables(q.dtype)
        unary = (q * unary_table).sum((-1, -2))
        if self.num_edges == 0:
            return unary
        qi = q[..., self.edges[:, 0], :]
        qj = q[..., self.edges[:, 1], :]
        if self.num_labels <= 4:   # sum_e qi_e^T P_e qj_e elementwise: 2x faster than einsum for few labels
            pair = ((qi.unsqueeze(-1) * pairwise).sum(-2) * qj).sum((-1, -2))
        else:
            pair = torch.einsum("...ea,eab,...eb->...", qi, pairwise, qj)
        return unary + pair

    def _tables(self, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(unary, pairwise)`` in ``dtype``, converted once and cached (until either tensor changes)."""
        key = (dtype, id(self.unary), self.unary._version, id(self.pairwise), self.pairwise._version)
        cached = self.__dict__.get("_table_cache")
        if cached is None or cached[0] != key:
            cached = (key, (self.unary.to(dtype), self.pairwise.to(dtype)))
            self.__dict__["_table_cache"] = cached
        return cached[1]

    def local_energies(self, configs: torch.Tensor) -> torch.Tensor:
        r"""Conditional energies :math:`\theta^i[a] + \sum_{j \sim i} \theta^{ij}[a, \alpha_j]` (B, n, c) of node ``i``
        taking label ``a`` while the others keep ``configs[b]``; ``softmax(-local)`` is the Gibbs conditional."""
        B = configs.shape[0]
        out = self.unary.expand(B, -1, -1).clone()
        if self.num_edges == 0:
            return out
        src, dst = self.edges[:, 0], self.edges[:, 1]
        eidx = torch.arange(self.num_edges, device=self.device)
        # edge (i, j): node i sees pairwise[e, :, alpha_j], node j sees pairwise[e, alpha_i, :]
        to_src = self.pairwise[eidx, :, configs[:, dst]]  # (B, E, c)
        to_dst = self.pairwise[eidx, configs[:, src], :]  # (B, E, c)
        out.index_add_(1, src, to_src)
        out.index_add_(1, dst, to_dst)
        return out

    def node_coloring(self) -> list[torch.Tensor]:
        """Greedy graph colouring: groups of pairwise non-adjacent nodes (for parallel Gibbs)."""
        n = self.num_nodes
        nbrs: list[set[int]] = [set() for _ in range(n)]
        for i, j in self.edges.tolist():
            nbrs[i].add(j)
            nbrs[j].add(i)
        colour = [-1] * n
        for i in range(n):
            used = {colour[j] for j in nbrs[i]}
            colour[i] = min(set(range(len(used) + 1)) - used)   # the least colour no neighbour has
        return [torch.tensor([i for i in range(n) if colour[i] == k], dtype=torch.long, device=self.device)
                for k in range(max(colour) + 1)]


def grid_edges(rows: int, cols: int, *, device=None) -> torch.Tensor:
    """4-neighbour edges of a ``rows x cols`` grid (row-major node order), shape ``(E, 2)``."""
    rows, cols = check_int("rows", rows, minimum=1), check_int("cols", cols, minimum=1)
    idx = torch.arange(rows * cols, device=device).reshape(rows, cols)
    horizontal = torch.stack([idx[:, :-1].reshape(-1), idx[:, 1:].reshape(-1)], 1)
    vertical = torch.stack([idx[:-1, :].reshape(-1), idx[1:, :].reshape(-1)], 1)
    return torch.cat([horizontal, vertical], 0)


def potts_grid(unary, coupling: float, *, dtype=None, device=None) -> PairwiseModel:
    r"""Potts model on a grid with unaries ``unary`` (rows, cols, c) and the pairwise energy
    :math:`\theta^{ij} = w (\mathbb{1}\mathbb{1}^\top - I)`, ``w = coupling`` (``w > 0`` favours smooth labelings)."""
    unary = as_tensor("unary", unary, dtype=dtype, device=device)
    check_ndim("unary", unary, (3,))
    rows, cols, c = unary.shape
    coupling = float(coupling)
    if not math.isfinite(coupling):
        raise UserInputError(f"coupling must be finite, got {coupling!r}")
    table = coupling * (1 - torch.eye(c, dtype=unary.dtype, device=unary.device))
    return PairwiseModel(unary.reshape(rows * cols, c), grid_edges(rows, cols, device=unary.device), table,
                         grid_shape=(rows, cols))


def ising_grid(rows: int = 3, cols: int = 8, field: float = 3.0, coupling: float = 2.1, *,
               dtype=None, device=None) -> PairwiseModel:
    r"""The binary boundary-field grid model of paper 001, Sect. 5 (Table 1).

    Class 0 has unary energy ``-field`` on the left boundary column and ``+field`` on the right one (0 elsewhere;
    class 1 always 0); neighbouring pixels with different labels pay ``coupling``.  The defaults reproduce the
    published Table 1 numbers (the paper's text says coupling 0.7, but only 3 x 0.7 = 2.1 gives its mean-field
    row; see ``docs/randomized.md``): log Z = 5.1362, <P*, E> = -1.5395, H(P*) = 3.5967.
    """
    rows, cols = check_int("rows", rows, minimum=1), check_int("cols", cols, minimum=2)
    field, coupling = check_number("field", field), check_number("coupling", coupling)
    dtype = dtype or torch.get_default_dtype()
    unary = torch.zeros(rows, cols, 2, dtype=dtype, device=device)
    unary[:, 0, 0] = -field
    unary[:, -1, 0] = field
    return potts_grid(unary, coupling)
