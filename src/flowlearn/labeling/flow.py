r"""The (full, nonlinear) assignment flow.

.. math:: \dot W = R_W S(W),\qquad W(0) = \mathbb{1}_\mathcal{W},\qquad
          S(W) = \mathrm{softmax}(\Omega(\log W - D/\rho)).

It is integrated in the tangent parametrisation :math:`W = \mathrm{softmax}(JV)`, where
:math:`\dot V = \tfrac1J\Pi_0 S(W)`: a Runge--Kutta method on :math:`V` is a geometric
(Lie-group) scheme on :math:`\mathcal{W}` -- explicit Euler on :math:`V` is exactly the
geometric Euler step :math:`W \leftarrow \exp_W(hS(W))`. Working with :math:`V` (log domain)
never underflows, however close :math:`W` gets to a vertex. Integration stops when the
mean row entropy of :math:`W` falls below ``entropy_tol``; then rows are rounded.

Reference: Åström, Petra, Schmitzer, Schnörr, *Image labeling by assignment*,
J. Math. Imaging Vis. 58 (2017); Zeilmann et al. 2020.
"""

from __future__ import annotations

import torch

from .._checks import UserTypeError, check_int, check_positive
from ..geometry import entropy, proj_tangent
from ..graphs import WeightOperator
from ..solvers import Euler, integrate
from ..solvers.base import Solver, linear_grid
from .data_term import check_distances, check_weight_operator, weights_like
from .result import LabelingResult

__all__ = ["AssignmentFlow"]


class AssignmentFlow:
    """Full assignment flow with geometric time stepping and entropy-based termination.

    Parameters
    ----------
    weights : WeightOperator
    rho : float > 0
        Scale of the data term.
    step_size : float > 0
        Time step ``h``.
    solver : Solver
        Runge--Kutta method on the tangent parametrisation: ``Euler()`` (geometric Euler,
        default), ``Heun()`` or ``RK4()`` (higher-order geometric schemes).
    max_steps : int
    entropy_tol : float > 0
        Stop when the mean row entropy (nats) is below this.
    """

    def __init__(self, weights: WeightOperator, rho: float = 1.0, step_size: float = 1.0,
                 solver: Solver | None = None, max_steps: int = 1000, entropy_tol: float = 1e-3):
        self.weights = check_weight_operator(weights)
        self.rho = check_positive("rho", rho)
        self.step_size = check_positive("step_size", step_size)
        self.solver = solver if solver is not None else Euler()
        if not isinstance(self.solver, Solver):
            raise UserTypeError(f"solver must be a flowlearn.solvers.Solver, got {type(self.solver).__name__}")
        self.max_steps = check_int("max_steps", max_steps, minimum=1)
        self.entropy_tol = check_positive("entropy_tol", entropy_tol)

    def vector_field(self, scaled_distances: torch.Tensor):
        r"""The tangent vector field :math:`V \mapsto \tfrac1J\Pi_0\mathrm{softmax}(J\Omega V - \Omega D/\rho)`."""
        J = scaled_distances.shape[1]
        weights = weights_like(self.weights, scaled_distances)
        offset = weights.apply(scaled_distances)

        def f(t, V):
            return proj_tangent(torch.softmax(J * weights.apply(V) - offset, dim=-1)) / J

        return f

    def run(self, distances, *, callback=None) -> LabelingResult:
        """Label from the distance matrix ``(I, J)``.

        ``callback(step, t, V)`` is called after every step (e.g. a progress bar).
        """
        Ds = check_distances(distances, self.weights.num_nodes) / self.rho
        J = Ds.shape[1]

        def converged(t, V):
            return float(entropy(torch.softmax(J * V, -1)).mean()) < self.entropy_tol

        ts = linear_grid(self.step_size * self.max_steps, self.max_steps)
        sol = integrate(self.vector_field(Ds), torch.zeros_like(Ds), ts, self.solver,
                        terminate=converged, callback=callback)
        W = torch.softmax(J * sol.y, dim=-1)
        return LabelingResult.from_assignment(W, tangent=sol.y, time=sol.t, steps=sol.stats["steps"],
                                              status=sol.status, stats=sol.stats)
