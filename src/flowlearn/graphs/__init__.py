"""Neighbourhood graphs and weight operators: grid stencils and sparse graphs."""

from .graph import GraphWeights
from .grid import GridWeights
from .grid3d import GridWeights3D
from .sparse import SparseOmega, SparsePattern
from .weights import WeightOperator

__all__ = ["GraphWeights", "GridWeights", "GridWeights3D", "SparseOmega", "SparsePattern", "WeightOperator"]
