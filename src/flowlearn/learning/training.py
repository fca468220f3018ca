r"""Training loop for the weight patches of one image: history, progress bar, checkpoints and resume.

>>> learner = WeightLearner(LowRank(m=10, rank=1), optimizer="rgd", lr=1.0, iters=50)  # doctest: +SKIP
>>> result = learner.fit(problem)                                                   # doctest: +SKIP
>>> result.history[-1]["label_error"]                                               # doctest: +SKIP

The loop, checkpoints and resume are those of :func:`flowlearn.engine.run_steps`.
Every iteration records ``iteration``, ``loss``, ``data_loss``, ``regularization``,
``label_error`` (percent of pixels whose :math:`\arg\max V_T` differs from the ground truth, at the
patches *before* the step), ``grad_norm`` (Riemannian) and ``seconds`` (cumulative gradient + step
time).  The run is deterministic, so a run resumed from a checkpoint ends exactly where an
uninterrupted one does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._checks import (
    UserTypeError,
    check_choice,
    check_int,
    check_positive,
)
from ..engine import CheckpointPolicy, RunResult, TrainState, run_identity, run_steps
from ..engine.checkpoint import fingerprint
from ..geometry import egrad2rgrad
from ..linearized import LowRank
from ..linearized.methods import METHODS
from .losses import LearningProblem
from .optim import RiemannianSGD, SimplexAdam

__all__ = ["LearningResult", "OPTIMIZERS", "WeightLearner", "label_error_percent"]

OPTIMIZERS = {"rgd": RiemannianSGD, "adam": SimplexAdam}


def label_error_percent(tangent: torch.Tensor, labels: torch.Tensor) -> float:
    """Percentage of nodes whose ``argmax`` of ``tangent`` differs from ``labels``."""
    return 100.0 * float((tangent.argmax(-1) != labels).double().mean())


@dataclass(kw_only=True)
class LearningResult(RunResult):
    """Learned ``patches`` ``(I, N)`` and the evaluation at them (``final``), beside the engine's
    ``status``, ``history`` (one dict per iteration) and ``stats``."""

    patches: torch.Tensor
    final: dict = field(default_factory=dict)


def problem_fingerprint(problem: LearningProblem) -> str:
    """Digest of everything that defines a learning problem: distances, labels, stencil, T, tau."""
    w = problem.weights
    return fingerprint(problem.scaled_distances, problem.labels, type(w).__name__, w.neighbour_index(), w.mask,
                       w.patches, problem.T, problem.tau)


class WeightLearner:
    r"""Learn weight patches by minimising :math:`\mathcal L(\Omega)` (paper 000, Sect. 3.1).

    Parameters
    ----------
    method : LowRank, Exact, DenseAutograd, AutodiffEuler or AutodiffExpint
        How :math:`V_T` and the gradient are computed (:mod:`flowlearn.linearized.methods`; default
        ``LowRank(m=10, rank=1)``, the closed form).
    optimizer : {"rgd", "adam"}
        Riemannian gradient descent (3.7) or :class:`SimplexAdam`.
    lr : float
        Step size.  The loss is a *mean* over pixels, so per-patch gradients scale like :math:`1/I`;
        the optimizer receives ``lr * I`` for ``"rgd"`` (the step of the per-pixel loss :math:`I f_L`)
        and ``lr`` for the scale-free ``"adam"``.
    iters : int
        Number of gradient steps.
    checkpoint_every : int
        Iterations between checkpoints (when ``fit`` gets a ``checkpoint`` path).
    checkpoint_seconds : float
        Also checkpoint when this many seconds have passed since the last one (0: never by time).
    show_progress : bool
    """

    def __init__(self, method=LowRank(), optimizer: str = "rgd", lr: float = 1.0, iters: int = 50,
                 checkpoint_every: int = 10, checkpoint_seconds: float = 30.0, show_progress: bool = True):
        if not isinstance(method, METHODS):
            raise UserTypeError(f"method must be one of {[m.__name__ for m in METHODS]}, got {method!r}")
        self.method = method
        check_choice("optimizer", optimizer, OPTIMIZERS)
        self.optimizer = optimizer
        self.lr = check_positive("lr", lr)
        self.iters = check_int("iters", iters, minimum=0)
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
        self.checkpoint_seconds = check_positive("checkpoint_seconds", checkpoint_seconds, strict=False)
        self.show_progress = bool(show_progress)

    def identity(self, problem: LearningProblem) -> dict:
        """What a checkpoint of this learner on ``problem`` must match to be resumed."""
        return run_identity("WeightLearner", method=self.method, config={"optimizer": self.optimizer, "lr": self.lr,
                                                                         "dtype": problem.weights.dtype},
                            inputs=problem_fingerprint(problem))

    def _make_optimizer(self, param: torch.Tensor) -> torch.optim.Optimizer:
        scale = param.shape[0] if self.optimizer == "rgd" else 1.0
        return OPTIMIZERS[self.optimizer]([param], lr=self.lr * scale)

    def evaluate(self, problem: LearningProblem, patches) -> dict:
        """Loss and label error (percent) of ``patches`` on ``problem`` (one gradient evaluation)."""
        r = problem.evaluate(patches, self.method)
        return {"loss": r.loss, "data_loss": r.data_loss, "regularization": r.regularization,
                "label_error": label_error_percent(r.tangent, problem.labels)}

    def fit(self, problem: LearningProblem, patches=None, *, checkpoint=None, resume: bool = False,
            overwrite: bool = False, callback=None, stop_after: int | None = None) -> LearningResult:
        """Run ``iters`` steps from ``patches`` (default: the problem's own weight patches).

        ``checkpoint``: path of a checkpoint file, rewritten every ``checkpoint_every`` iterations,
        every ``checkpoint_seconds`` and at the end.  An existing checkpoint is refused unless
        ``resume=True`` (continue it; it must belong to this learner and problem, else a
        :class:`UserInputError` names what differs) or ``overwrite=True`` (start afresh).
        ``callback(iteration, record)`` is called after every step.

        Weight learning of one image has no data axis to split: under ``torchrun`` every rank runs
        the same deterministic steps and only rank 0 writes the checkpoint.
        """
        if not isinstance(problem, LearningProblem):
            raise UserTypeError(f"problem must be a LearningProblem, got {type(problem).__name__}")
        p0 = problem.weights.patches if patches is None else patches
        param = problem.check_patches(p0).detach().clone()
        opt = self._make_optimizer(param)

        def step(it: int) -> dict:
            r = problem.evaluate(param, self.method)
            param.grad = r.grad
            opt.step()
            param.grad = None
            return {"loss": r.loss, "data_loss": r.data_loss, "regularization": r.regularization,
                    "label_error": label_error_percent(r.tangent, problem.labels),
                    "grad_norm": float(torch.linalg.vector_norm(egrad2rgrad(param, r.grad)))}

        run = run_steps(step, iterations=self.iters, state=TrainState(patches=param, optimizer=opt),
                        identity=self.identity(problem),
                        checkpoint=CheckpointPolicy(checkpoint, self.checkpoint_every, self.checkpoint_seconds,
                                                    resume, overwrite),
                        desc="learn", show_progress=None if self.show_progress else False,
                        postfix=("loss", "label_error"), stop_after=stop_after, callback=callback)
        final = self.evaluate(problem, param)
        return LearningResult(patches=param.detach(), final=final, status=run.status, history=run.history,
                              stats=run.stats)
