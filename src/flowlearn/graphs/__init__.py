"""Neighbourhood graphs and weight operators: grid stencils and sparse graphs."""

from .graph import GraphWeights
from .grid import GridWeights
from .sparse import SparseOmega, SparsePattern
from .weights import WeightOperator

__all__ = ["GraphWeights", "GridWeights", "SparseOmega", "SparsePattern", "WeightOperator"]
