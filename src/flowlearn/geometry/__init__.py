"""Geometry of the probability simplex and the assignment manifold (knows nothing else)."""

from .simplex import Simplex, barycenter, egrad2rgrad, entropy, expmap, lift, log_lift, logmap, proj_tangent, replicator

__all__ = ["Simplex", "barycenter", "egrad2rgrad", "entropy", "expmap", "lift", "log_lift", "logmap", "proj_tangent",
           "replicator"]
