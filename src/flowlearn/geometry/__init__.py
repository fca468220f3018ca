"""Geometry of the probability simplex and the assignment manifold (knows nothing else)."""

from .simplex import (
    Simplex,
    barycenter,
    egrad2rgrad,
    entropy,
    expmap,
    inner,
    lift,
    lift_inverse,
    log_lift,
    logmap,
    proj_tangent,
    replicator,
    replicator_,
    replicator_matrix,
)

__all__ = [
    "Simplex",
    "barycenter",
    "egrad2rgrad",
    "entropy",
    "expmap",
    "inner",
    "lift",
    "lift_inverse",
    "log_lift",
    "logmap",
    "proj_tangent",
    "replicator",
    "replicator_",
    "replicator_matrix",
]
