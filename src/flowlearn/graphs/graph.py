r"""Weight operators on arbitrary undirected graphs (edge list or SciPy adjacency).

The neighbourhood of node :math:`i` is :math:`\mathcal{N}_i = \{i\}\cup\{k: ik\in E\}` (slot 0 is the node
itself, then its neighbours in increasing order); nodes of lower degree have masked padding slots.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import UserInputError, check_int
from .weights import WeightOperator

__all__ = ["GraphWeights"]


class GraphWeights(WeightOperator):
    """:math:`\\Omega` on a graph given by an undirected edge list.

    Parameters
    ----------
    edges : array ``(E, 2)`` of int
        Undirected edges; duplicates, both orientations and self-loops are allowed and merged.
    num_nodes : int
    patches : array ``(I, N)``, optional
        Weight patches over the slots of each neighbourhood, ``N = 1 + max degree``.  Default: uniform.
    """

    def __init__(self, edges, num_nodes: int, patches=None, *, dtype=None, device=None):
        self.num_nodes = check_int("num_nodes", num_nodes, minimum=1)
        e = np.asarray(edges)
        if e.size == 0:
            e = np.zeros((0, 2), dtype=np.int64)
        if e.ndim != 2 or e.shape[1] != 2:
            raise UserInputError(f"edges must have shape (E, 2), got shape {e.shape}")
        if not np.issubdtype(e.dtype, np.integer):
            if not np.all(np.equal(np.mod(e, 1), 0)):
                raise UserInputError("edges must hold integer node indices")
            e = e.astype(np.int64)
        if e.size and (e.min() < 0 or e.max() >= self.num_nodes):
            raise UserInputError(f"edges must index nodes 0..{self.num_nodes - 1}, got indices in "
                                 f"[{e.min()}, {e.max()}]")
        nbrs = [set() for _ in range(self.num_nodes)]
        for a, b in e.tolist():
            if a != b:
                nbrs[a].add(b)
                nbrs[b].add(a)
        self.patch_size = 1 + max((len(s) for s in nbrs), default=0)
        idx = np.tile(np.arange(self.num_nodes)[:, None], (1, self.patch_size))
        mask = np.zeros((self.num_nodes, self.patch_size), dtype=bool)
        mask[:, 0] = True
        for i, s in enumerate(nbrs):
            k = sorted(s)
            idx[i, 1:1 + len(k)] = k
            mask[i, 1:1 + len(k)] = True
        self._index = torch.as_tensor(idx, dtype=torch.long, device=device)
        self.mask = torch.as_tensor(mask, device=device)
        if patches is None:
            dtype = dtype or torch.get_default_dtype()
            patches = self.mask.to(dtype) / self.mask.sum(-1, keepdim=True)
        self._init_patches(patches, dtype, device)
        self._index = self._index.to(self.device)

    @classmethod
    def from_adjacency(cls, adjacency, patches=None, *, dtype=None, device=None) -> GraphWeights:
        """From a (symmetric) SciPy sparse or dense adjacency matrix; non-zeros are edges."""
        import scipy.sparse as sp

        a = sp.coo_array(adjacency)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise UserInputError(f"adjacency must be a square matrix, got shape {a.shape}")
        edges = np.stack([a.row, a.col], 1)[a.data != 0]
        return cls(edges, a.shape[0], patches, dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"GraphWeights(num_nodes={self.num_nodes}, patch_size={self.patch_size})"

    def neighbour_index(self) -> torch.Tensor:
        return self._index.to(self.device)

    def _flat(self, x):
        return x.reshape(self.num_nodes, -1)

    def _apply(self, w, x):
        xf = self._flat(x)
        return (w.unsqueeze(-1) * xf[self.neighbour_index()]).sum(1).reshape(x.shape)

    def _apply_transpose(self, w, x):
        xf = self._flat(x)
        idx = self.neighbour_index()
        contrib = (w.unsqueeze(-1) * xf.unsqueeze(1)).reshape(-1, xf.shape[1])
        out = torch.zeros(xf.shape, dtype=contrib.dtype, device=xf.device)
        return out.index_add(0, idx.reshape(-1), contrib).reshape(x.shape)

    def _patch_products(self, u, x):
        uf, xf = self._flat(u), self._flat(x)
        return (uf.unsqueeze(1) * xf[self.neighbour_index()]).sum(-1)
