r"""The linearized assignment flow and its sequence of re-linearizations.

With the tangent parametrisation at the barycenter, :math:`W = \mathrm{Exp}_{W_0}(V) =
\mathrm{softmax}_\text{rows}(JV)`, the assignment flow reads
:math:`\dot V = F(V) = \tfrac1J\Pi_0\,\mathrm{softmax}(J\Omega V - \Omega D/\rho)`.
Its linearization at :math:`V_k` (Zeilmann et al. 2020, Prop. 4.4 for :math:`V_k=0`) is

.. math:: \dot U = A U + B,\qquad AU = R_{S_k}(\Omega U),\qquad B = \tfrac1J\Pi_0 S_k,
          \qquad S_k = \mathrm{softmax}(\Omega(JV_k - D/\rho)),

with solution :math:`U(T) = T\varphi(TA)B`. Row-stacked, :math:`A^J = \mathrm{Diag}(R_{S_k})(\Omega\otimes I_J)`
and :math:`(A^J)^\top = (\Omega^\top\otimes I_J)\mathrm{Diag}(R_{S_k})`.

References
----------
Zeilmann, Savarino, Petra, Schnörr, *Geometric numerical integration of the assignment
flow*, Inverse Problems 36 (2020). Zeilmann, Petra, Schnörr, *Learning linearized
assignment flows for image labeling* (paper 000), eqs. (1.1), (1.6), (2.22)--(2.29).
"""

from __future__ import annotations

import torch

from .._checks import UserTypeError, check_int, check_positive
from ..geometry import entropy
from ..graphs import WeightOperator
from ..linearized.system import LinearizedSystem
from ..solvers import ExponentialIntegrator, FixedStepIntegrator
from ..status import Status
from .data_term import check_weight_operator, flow_inputs
from .result import LabelingResult

__all__ = ["LinearizedAssignmentFlow", "LinearizedFlowSequence"]


def _integrator_check(integrator):
    if not isinstance(integrator, (ExponentialIntegrator, FixedStepIntegrator)):
        raise UserTypeError(
            "integrator must be an ExponentialIntegrator or FixedStepIntegrator, "
            f"got {type(integrator).__name__}"
        )
    return integrator


class LinearizedAssignmentFlow:
    r"""Linearized assignment flow at the barycenter, :math:`V(T) = T\varphi(TA)B`, :math:`W = \mathrm{softmax}(JV(T))`.

    Parameters
    ----------
    weights : WeightOperator
        :math:`\Omega` (e.g. :class:`~flowlearn.graphs.GridWeights`).
    rho : float > 0
        Scale of the data term.
    T : float > 0
        Integration time.
    integrator : ExponentialIntegrator or FixedStepIntegrator
        Krylov exponential integration (default, ``m = 10``) or explicit Euler of the same ODE.
    """

    def __init__(self, weights: WeightOperator, rho: float = 1.0, T: float = 10.0,
                 integrator=None):
        self.weights = check_weight_operator(weights)
        self.rho = check_positive("rho", rho)
        self.T = check_positive("T", T)
        self.integrator = _integrator_check(integrator if integrator is not None else ExponentialIntegrator())

    def system(self, distances) -> LinearizedSystem:
        r"""The affine system :math:`\dot U = AU + B` linearized at the barycenter for ``distances`` ``(I, J)``.

        The distances are validated and scaled to :math:`D/\rho`; the weights follow their dtype and device.
        """
        return LinearizedSystem.at(*flow_inputs(self.weights, distances, self.rho))

    def run(self, distances) -> LabelingResult:
        """Label from the distance matrix ``(I, J)``; returns a :class:`LabelingResult`."""
        sysm = self.system(distances)
        r = self.integrator.solve(sysm.matvec, sysm.B, self.T)
        J = sysm.num_labels
        W = torch.softmax(J * r.y, dim=-1)
        stats = dict(r.stats, error_estimate=r.error_estimate)
        steps = r.stats.get("substeps", r.stats.get("steps", 1))
        return LabelingResult.from_assignment(W, tangent=r.y, time=self.T, steps=steps,
                                              status=r.status, stats=stats)


class LinearizedFlowSequence:
    r"""Sequence of linearized flows (1.6): re-linearize at :math:`W^{(k)}` after each interval :math:`h_k`.

    :math:`V_{k+1} = V_k + U_k(h_k)` where :math:`U_k` solves the flow linearized at :math:`V_k`;
    :math:`W^{(k)} = \mathrm{softmax}(JV_k)`. Stops when the mean row entropy of :math:`W` is below
    ``entropy_tol`` or after ``max_intervals`` intervals. With small intervals it approaches the full flow.

    Parameters
    ----------
    weights, rho : as for :class:`LinearizedAssignmentFlow`
    interval : float > 0
        Length :math:`h_k` of every interval.
    max_intervals : int
    entropy_tol : float
    integrator : ExponentialIntegrator or FixedStepIntegrator
    """

    def __init__(self, weights: WeightOperator, rho: float = 1.0, interval: float = 5.0,
                 max_intervals: int = 20, entropy_tol: float = 1e-3, integrator=None):
        self.weights = check_weight_operator(weights)
        self.rho = check_positive("rho", rho)
        self.interval = check_positive("interval", interval)
        self.max_intervals = check_int("max_intervals", max_intervals, minimum=1)
        self.entropy_tol = check_positive("entropy_tol", entropy_tol)
        self.integrator = _integrator_check(integrator if integrator is not None else ExponentialIntegrator())

    def run(self, distances) -> LabelingResult:
        r"""Label from the distance matrix ``(I, J)`` by successive re-linearizations.

        Returns
        -------
        LabelingResult
            :math:`W = \mathrm{softmax}(JV_k)` with tangent :math:`V_k`, ``time = k * interval``,
            ``steps = k``; ``status`` is ``"terminated"`` if the entropy criterion was met, else
            ``"max_steps"``; ``stats`` holds ``intervals`` and the total ``matvecs``.
        """
        weights, Ds = flow_inputs(self.weights, distances, self.rho)
        J = Ds.shape[1]
        V = torch.zeros_like(Ds)
        status, matvecs = Status.MAX_STEPS, 0
        k = 0
        for k in range(1, self.max_intervals + 1):
            sysm = LinearizedSystem.at(weights, Ds, V)
            r = self.integrator.solve(sysm.matvec, sysm.B, self.interval)
            V = V + r.y
            matvecs += r.stats.get("matvecs", 0)
            if float(entropy(torch.softmax(J * V, -1)).mean()) < self.entropy_tol:
                status = Status.TERMINATED
                break
        W = torch.softmax(J * V, dim=-1)
        return LabelingResult.from_assignment(W, tangent=V, time=k * self.interval, steps=k, status=status,
                                              stats={"intervals": k, "matvecs": matvecs})
