r"""The assignment flow, its linearization and the sequence of re-linearizations; their result object.

.. math:: \dot W = R_W S(W),\qquad W(0) = \mathbb{1}_\mathcal{W},\qquad
          S(W) = \mathrm{softmax}(\Omega(\log W - D/\rho)).

It is integrated in the tangent parametrisation :math:`W = \mathrm{softmax}(JV)`, where
:math:`\dot V = F(V) = \tfrac1J\Pi_0\,\mathrm{softmax}(J\Omega V - \Omega D/\rho)`: a Runge--Kutta method on
:math:`V` is a geometric (Lie-group) scheme on :math:`\mathcal{W}` -- explicit Euler on :math:`V` is exactly
the geometric Euler step :math:`W \leftarrow \exp_W(hS(W))` -- and never underflows, however close :math:`W`
gets to a vertex.  Integration stops when the mean row entropy of :math:`W` falls below ``entropy_tol``.

The linearization at :math:`V_k` (Zeilmann et al. 2020, Prop. 4.4 for :math:`V_k=0`) is

.. math:: \dot U = A U + B,\qquad AU = R_{S_k}(\Omega U),\qquad B = \tfrac1J\Pi_0 S_k,
          \qquad S_k = \mathrm{softmax}(\Omega(JV_k - D/\rho)),

with solution :math:`U(T) = T\varphi(TA)B`. Row-stacked, :math:`A^J = \mathrm{Diag}(R_{S_k})(\Omega\otimes I_J)`
and :math:`(A^J)^\top = (\Omega^\top\otimes I_J)\mathrm{Diag}(R_{S_k})`.

References
----------
Åström, Petra, Schmitzer, Schnörr, *Image labeling by assignment*, J. Math. Imaging Vis. 58 (2017).
Zeilmann, Savarino, Petra, Schnörr, *Geometric numerical integration of the assignment
flow*, Inverse Problems 36 (2020). Zeilmann, Petra, Schnörr, *Learning linearized
assignment flows for image labeling* (paper 000), eqs. (1.1), (1.6), (2.22)--(2.29).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._checks import ComputationError, UserInputError, UserTypeError, check_int, check_positive
from ..geometry import entropy, proj_tangent
from ..graphs import WeightOperator
from ..linearized.system import LinearizedSystem
from ..solvers import Euler, ExponentialIntegrator, FixedStepIntegrator, integrate
from ..solvers.base import Solver, linear_grid
from ..status import Status
from .data_term import check_distances, check_weight_operator, flow_inputs, weights_like

__all__ = ["AssignmentFlow", "LabelingResult", "LinearizedAssignmentFlow", "LinearizedFlowSequence"]

#: a row whose two largest assignment probabilities differ by less than this is undecided
UNDECIDED_GAP = 1e-9


@dataclass
class LabelingResult:
    """Outcome of a labeling flow.

    Attributes
    ----------
    assignment, tangent : tensors ``(I, J)``
        Final assignment matrix :math:`W` (rows on the simplex) and :math:`V` with :math:`W = \\mathrm{softmax}(JV)`.
    labels : tensor ``(I,)`` long
        ``argmax`` of each row.
    time, steps : float, int
        Time reached; steps (or Krylov sub-steps / intervals) taken.
    status : Status
        ``status.ok`` says whether the labeling may be used, ``status.message`` why not.
    mean_entropy, stats : float, dict
        Mean row entropy of ``assignment``; work counters of the solver.
    """

    assignment: torch.Tensor
    labels: torch.Tensor
    tangent: torch.Tensor
    time: float
    steps: int
    status: Status
    mean_entropy: float
    stats: dict = field(default_factory=dict)

    @classmethod
    def from_assignment(cls, W, *, tangent, time, steps, status, stats=None) -> "LabelingResult":
        """The result of a flow's final assignment ``W``; the solver's status becomes ``NONFINITE``
        when ``W`` has NaN/inf entries and ``UNDECIDED`` when most rows are uniform to
        ``UNDECIDED_GAP`` (no label was chosen), so that no failure passes as a labeling."""
        status = Status(status)
        stats = dict(stats or {})
        if not bool(torch.isfinite(W).all()):
            status = Status.NONFINITE
        elif W.shape[-1] > 1:
            top = W.topk(2, dim=-1).values
            undecided = float(((top[:, 0] - top[:, 1]) < UNDECIDED_GAP).double().mean())
            stats["undecided_fraction"] = undecided
            if undecided > 0.5:  # the more telling cause, whatever the solver says
                status = Status.UNDECIDED
        return cls(assignment=W, labels=W.argmax(-1), tangent=tangent, time=float(time), steps=int(steps),
                   status=status, mean_entropy=float(entropy(W).mean()), stats=stats)

    def raise_for_status(self, *, options: str = "") -> "LabelingResult":
        """``self`` when :attr:`status` is ``ok``, else :class:`~flowlearn._checks.ComputationError`
        naming the cause (``options``: what the caller can change, e.g. ``"--T, --rho"``)."""
        if not self.status.ok:
            extra = f" (options: {options})" if options else ""
            raise ComputationError(f"the flow did not produce a labeling: status {self.status.value}: "
                                   f"{self.status.message}{extra}")
        return self

    def label_image(self, height: int, width: int) -> torch.Tensor:
        """Labels reshaped to an ``(height, width)`` image."""
        if height * width != self.labels.numel():
            raise UserInputError(f"height*width must equal {self.labels.numel()}, got {height}x{width}")
        return self.labels.reshape(height, width)


class AssignmentFlow:
    """Full assignment flow with geometric time stepping and entropy-based termination.

    Parameters
    ----------
    weights : WeightOperator
    rho, step_size : float > 0
        Scale of the data term; time step.
    solver : Solver
        Runge--Kutta method on the tangent parametrisation: ``Euler()`` (geometric Euler, default),
        ``Heun()`` or ``RK4()``.
    max_steps, entropy_tol : int, float > 0
        Step budget; stop when the mean row entropy (nats) is below ``entropy_tol``.
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
        return lambda t, V: proj_tangent(torch.softmax(J * weights.apply(V) - offset, dim=-1)) / J

    def run(self, distances) -> LabelingResult:
        """Label from the distance matrix ``(I, J)``."""
        Ds = check_distances(distances, self.weights.num_nodes) / self.rho
        J = Ds.shape[1]
        ts = linear_grid(self.step_size * self.max_steps, self.max_steps)
        sol = integrate(self.vector_field(Ds), torch.zeros_like(Ds), ts, self.solver,
                        terminate=lambda t, V: float(entropy(torch.softmax(J * V, -1)).mean()) < self.entropy_tol)
        W = torch.softmax(J * sol.y, dim=-1)
        return LabelingResult.from_assignment(W, tangent=sol.y, time=sol.t, steps=sol.stats["steps"],
                                              status=sol.status, stats=sol.stats)


def _integrator_check(integrator):
    integrator = ExponentialIntegrator() if integrator is None else integrator
    if not isinstance(integrator, (ExponentialIntegrator, FixedStepIntegrator)):
        raise UserTypeError(f"integrator must be an ExponentialIntegrator or FixedStepIntegrator, "
                            f"got {type(integrator).__name__}")
    return integrator


class LinearizedAssignmentFlow:
    r"""Linearized assignment flow at the barycenter, :math:`V(T) = T\varphi(TA)B`, :math:`W = \mathrm{softmax}(JV(T))`.

    Parameters
    ----------
    weights : WeightOperator
        :math:`\Omega` (e.g. :class:`~flowlearn.graphs.GridWeights`).
    rho, T : float > 0
        Scale of the data term, integration time.
    integrator : ExponentialIntegrator or FixedStepIntegrator
        Krylov exponential integration (default, ``m = 10``) or explicit Euler of the same ODE.
    """

    def __init__(self, weights: WeightOperator, rho: float = 1.0, T: float = 10.0, integrator=None):
        self.weights = check_weight_operator(weights)
        self.rho = check_positive("rho", rho)
        self.T = check_positive("T", T)
        self.integrator = _integrator_check(integrator)

    def run(self, distances) -> LabelingResult:
        """Label from the distance matrix ``(I, J)``."""
        sysm = LinearizedSystem.at(*flow_inputs(self.weights, distances, self.rho))
        r = self.integrator.solve(sysm.matvec, sysm.B, self.T)
        W = torch.softmax(sysm.num_labels * r.y, dim=-1)
        steps = r.stats.get("substeps", r.stats.get("steps", 1))
        return LabelingResult.from_assignment(W, tangent=r.y, time=self.T, steps=steps, status=r.status,
                                              stats=dict(r.stats, error_estimate=r.error_estimate))


class LinearizedFlowSequence:
    r"""Sequence of linearized flows (1.6): re-linearize at :math:`W^{(k)}` after each interval :math:`h_k`.

    :math:`V_{k+1} = V_k + U_k(h_k)` where :math:`U_k` solves the flow linearized at :math:`V_k`;
    :math:`W^{(k)} = \mathrm{softmax}(JV_k)`. Stops when the mean row entropy of :math:`W` is below
    ``entropy_tol`` or after ``max_intervals`` intervals. With small intervals it approaches the full flow.

    Parameters
    ----------
    weights, rho, integrator : as for :class:`LinearizedAssignmentFlow`
    interval : float > 0
        Length :math:`h_k` of every interval.
    max_intervals, entropy_tol : int, float
    """

    def __init__(self, weights: WeightOperator, rho: float = 1.0, interval: float = 5.0,
                 max_intervals: int = 20, entropy_tol: float = 1e-3, integrator=None):
        self.weights = check_weight_operator(weights)
        self.rho = check_positive("rho", rho)
        self.interval = check_positive("interval", interval)
        self.max_intervals = check_int("max_intervals", max_intervals, minimum=1)
        self.entropy_tol = check_positive("entropy_tol", entropy_tol)
        self.integrator = _integrator_check(integrator)

    def run(self, distances) -> LabelingResult:
        r"""Label from the distance matrix ``(I, J)``: :math:`W = \mathrm{softmax}(JV_k)` after ``k`` intervals
        (status ``"terminated"`` if the entropy criterion was met, else ``"max_steps"``)."""
        weights, Ds = flow_inputs(self.weights, distances, self.rho)
        J = Ds.shape[1]
        V = torch.zeros_like(Ds)
        status, matvecs, k = Status.MAX_STEPS, 0, 0
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
