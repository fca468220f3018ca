"""Neighbourhood graphs and weight operators: grid stencils and sparse graphs."""

from .batch import BatchWeights
from .graph import GraphWeights
from .grid import GridWeights
from .grid3d import GridWeights3D
from .weights import WeightOperator

__all__ = ["BatchWeights", "GraphWeights", "GridWeights", "GridWeights3D", "WeightOperator"]
