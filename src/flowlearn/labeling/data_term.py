r"""Data terms: distances between features and label prototypes, and the similarity map.

For features :math:`f_i` and prototypes :math:`l_j`, the distance matrix is
:math:`D_{ij} = d(f_i, l_j)`; the likelihoods are :math:`L(W) = \exp_W(-D/\rho)` and the
similarity map (geometric averaging over neighbourhoods) simplifies to

.. math:: S(W) = \mathrm{softmax}_\text{rows}\big(\Omega(\log W - D/\rho)\big).
"""

from __future__ import annotations

import torch

from .._checks import UserInputError, UserTypeError, as_tensor, check_choice, check_finite, check_ndim
from ..graphs import WeightOperator

__all__ = ["DISTANCES", "check_distances", "check_weight_operator", "distance_matrix", "flow_inputs",
           "weights_like"]

DISTANCES = ("sqeuclidean", "euclidean", "l1")


def distance_matrix(features, prototypes, metric: str = "sqeuclidean") -> torch.Tensor:
    r"""Distance matrix :math:`D_{ij} = d(f_i, l_j)`, a tensor ``(I, J)`` in the features' dtype and device.

    Parameters
    ----------
    features : array ``(I, C)`` or ``(H, W, C)`` (an image is flattened row-major)
    prototypes : array ``(J, C)``
    metric : {"sqeuclidean", "euclidean", "l1"}
    """
    f = as_tensor("features", features)
    check_ndim("features", f, (2, 3))
    if f.ndim == 3:
        f = f.reshape(-1, f.shape[-1])
    p = as_tensor("prototypes", prototypes, dtype=f.dtype, device=f.device)
    if p.ndim == 1:
        p = p.unsqueeze(1)
    check_ndim("prototypes", p, (2,))
    if p.shape[1] != f.shape[1]:
        raise UserInputError(f"prototypes must have the features' dimension C={f.shape[1]}, got shape {tuple(p.shape)}")
    if p.shape[0] < 2:
        raise UserInputError(f"prototypes must hold at least 2 labels, got {p.shape[0]}")
    check_finite("features", f)
    check_finite("prototypes", p)
    check_choice("metric", metric, DISTANCES)
    diff = f.unsqueeze(1) - p.unsqueeze(0)
    if metric == "l1":
        return diff.abs().sum(-1)
    d2 = (diff * diff).sum(-1)
    return d2 if metric == "sqeuclidean" else d2.sqrt()


def check_distances(distances, num_nodes: int | None = None) -> torch.Tensor:
    """Validate a distance matrix ``(I, J)``: finite, non-negative, ``J >= 2``."""
    D = as_tensor("distances", distances)
    check_ndim("distances", D, (2,))
    if num_nodes is not None and D.shape[0] != num_nodes:
        raise UserInputError(f"distances must have {num_nodes} rows, one row per node of the weights ({num_nodes}), "
                             f"got shape {tuple(D.shape)}")
    if D.shape[1] < 2:
        raise UserInputError(f"distances must have at least 2 columns (labels), got shape {tuple(D.shape)}")
    check_finite("distances", D)
    if bool((D < 0).any()):
        raise UserInputError(f"distances must be non-negative, got minimum {D.min().item():.4g}")
    return D


def check_weight_operator(weights) -> WeightOperator:
    """``weights`` after checking that it is a :class:`~flowlearn.graphs.WeightOperator`."""
    if not isinstance(weights, WeightOperator):
        raise UserTypeError(f"weights must be a WeightOperator, got {type(weights).__name__}")
    return weights


def weights_like(weights, distances: torch.Tensor):
    """``weights`` cast to the dtype and device of ``distances`` (itself when they already match)."""
    if weights.dtype == distances.dtype and weights.device == distances.device:
        return weights
    return weights.to(device=distances.device, dtype=distances.dtype)


def flow_inputs(weights, distances, rho: float) -> tuple:
    """``(weights, D/rho)`` of a flow: the distances checked against ``weights``, the weights in their dtype."""
    D = check_distances(distances, weights.num_nodes)
    return weights_like(weights, D), D / rho
