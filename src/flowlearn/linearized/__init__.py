r"""The linearized assignment flow in closed form (paper 000): the one place where :math:`V_T` and its
gradient are computed.

* :mod:`.system` -- the affine system :math:`\dot U = AU + B` (:class:`LinearizedSystem`);
* :mod:`.closed_form` -- forward :math:`V_T = T\varphi(TA)B` and the gradient of Theorem 3.8, dense and
  Krylov + Benzi--Simoncini low rank, built on :mod:`.kronecker` and :mod:`.contraction`;
* :mod:`.methods` -- the strategy objects :class:`LowRank`, :class:`Exact`, :class:`DenseAutograd`,
  :class:`AutodiffEuler`, :class:`AutodiffExpint`;
* :mod:`.function` -- :func:`linearized_flow`, the differentiable function of a batch (a
  ``torch.autograd.Function`` with the closed-form backward) that every other use calls;
* :mod:`.layer` -- :class:`LinearizedAssignmentLayer`, the layer on channels-first 2-D and 3-D batches.
"""

from .function import linearized_flow
from .layer import LinearizedAssignmentLayer
from .methods import (
    AutodiffEuler,
    AutodiffExpint,
    DenseAutograd,
    Exact,
    LowRank,
    method_from_name,
)
from .system import LinearizedSystem

__all__ = [
    "AutodiffEuler",
    "AutodiffExpint",
    "DenseAutograd",
    "Exact",
    "LinearizedAssignmentLayer",
    "LinearizedSystem",
    "LowRank",
    "linearized_flow",
    "method_from_name",
]
