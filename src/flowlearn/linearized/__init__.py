r"""The linearized assignment flow in closed form (paper 000): the one place where :math:`V_T` and its
gradient are computed (:mod:`.closed_form`), with the affine system (:mod:`.system`), the strategy objects
(:mod:`.methods`), the differentiable function every other use calls (:func:`linearized_flow`) and the layer
on channels-first 2-D and 3-D batches (:class:`LinearizedAssignmentLayer`).
"""

from .function import linearized_flow
from .layer import LinearizedAssignmentLayer
from .methods import AutodiffEuler, AutodiffExpint, DenseAutograd, Exact, LowRank
from .system import LinearizedSystem

__all__ = ["AutodiffEuler", "AutodiffExpint", "DenseAutograd", "Exact", "LinearizedAssignmentLayer",
           "LinearizedSystem", "LowRank", "linearized_flow"]
