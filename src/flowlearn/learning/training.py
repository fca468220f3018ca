r"""Learning the weight patches of one image: optimizers on the product of patch simplices and the training
loop on :func:`flowlearn.engine.run_steps` (history, progress bar, checkpoints and resume).

The optimizers are used like ``torch.optim`` ones on parameters ``(I, N)`` whose rows lie in the open simplex
and whose ``.grad`` holds the *Euclidean* gradient :math:`\partial_p\mathcal L`: :class:`RiemannianSGD`, step
(3.7) :math:`p_i \leftarrow \exp_{p_i}(-h\,\partial_{p_i}\mathcal L) = \mathrm{Exp}_{p_i}(-h\,R_{p_i}\partial_{p_i}
\mathcal L)`, and :class:`SimplexAdam`, Adam moments of :math:`R_p\partial\mathcal L` followed by the same lifting
map.  Entries are floored at ``min_weight`` and the rows renormalised (underflow after very large steps).

Every iteration records ``iteration``, ``loss``, ``data_loss``, ``regularization``, ``label_error`` (percent of
pixels whose :math:`\arg\max V_T` differs from the ground truth, at the patches *before* the step),
``grad_norm`` (Riemannian) and ``seconds``.  The run is deterministic, so a resumed run ends exactly where an
uninterrupted one does.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch

from .._checks import UserInputError, UserTypeError, check_choice, check_int, check_positive, check_probability_rows
from ..engine import CheckpointPolicy, RunResult, TrainState, run_identity, run_steps
from ..engine.checkpoint import fingerprint
from ..geometry import egrad2rgrad, lift
from ..linearized import LowRank
from ..linearized.methods import check_method
from .losses import LearningProblem

__all__ = ["LearningResult", "OPTIMIZERS", "RiemannianSGD", "SimplexAdam", "WeightLearner", "label_error_percent"]


class _SimplexOptimizer(torch.optim.Optimizer, abc.ABC):
    """Shared ``step``: for every parameter with a gradient, ``p <- exp_p(direction(p, group))``, floored at
    ``min_weight`` and renormalised."""

    def __init__(self, params, defaults: dict):
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise UserInputError(f"simplex parameters must have shape (I, N), got {tuple(p.shape)}")
                with torch.no_grad():   # a point off the simplex would give NaN after one step
                    check_probability_rows("simplex parameter", p, atol=1e-6 if p.dtype == torch.float64 else 1e-4)

    @abc.abstractmethod
    def _direction(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """The tangent vector ``v`` of the update ``p <- exp_p(v)``."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    q = lift(p, self._direction(p, group)).clamp_(min=group["min_weight"])
                    p.copy_(q / q.sum(-1, keepdim=True))
        return loss


class RiemannianSGD(_SimplexOptimizer):
    r"""Riemannian gradient descent (3.7) with step size ``lr`` (:math:`h`)."""

    def __init__(self, params, lr: float = 1.0, min_weight: float = 1e-12):
        super().__init__(params, dict(lr=check_positive("lr", lr), min_weight=check_positive("min_weight", min_weight)))

    def _direction(self, p, group):
        return -group["lr"] * p.grad


class SimplexAdam(_SimplexOptimizer):
    r"""Adam on the logits of simplex rows: moments of :math:`R_p\partial\mathcal L`, update by :math:`\exp_p`."""

    def __init__(self, params, lr: float = 0.05, betas=(0.9, 0.999), eps: float = 1e-8, min_weight: float = 1e-12):
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise UserInputError(f"betas must lie in [0, 1), got {tuple(betas)}")
        super().__init__(params, dict(lr=check_positive("lr", lr), betas=(b1, b2), eps=check_positive("eps", eps),
                                     min_weight=check_positive("min_weight", min_weight)))

    def _direction(self, p, group):
        b1, b2 = group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        g = egrad2rgrad(p, p.grad)
        state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = state["exp_avg"] / (1 - b1 ** state["step"])
        v_hat = state["exp_avg_sq"] / (1 - b2 ** state["step"])
        return -group["lr"] * m_hat / (v_hat.sqrt() + group["eps"])


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
        How :math:`V_T` and the gradient are computed (:mod:`flowlearn.linearized.methods`).
    optimizer : {"rgd", "adam"}
        Riemannian gradient descent (3.7) or :class:`SimplexAdam`.
    lr : float
        Step size.  The loss is a *mean* over pixels, so ``"rgd"`` receives ``lr * I`` (the step of the
        per-pixel loss :math:`I f_L`) and the scale-free ``"adam"`` ``lr``.
    iters : int
        Number of gradient steps.
    checkpoint_every, checkpoint_seconds : int, float
        Iterations and seconds (0: never by time) between checkpoints, when ``fit`` gets a ``checkpoint`` path.
    """

    def __init__(self, method=LowRank(), optimizer: str = "rgd", lr: float = 1.0, iters: int = 50,
                 checkpoint_every: int = 10, checkpoint_seconds: float = 30.0, show_progress: bool = True):
        self.method = check_method(method)
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

    def evaluate(self, problem: LearningProblem, patches) -> dict:
        """Loss and label error (percent) of ``patches`` on ``problem`` (one gradient evaluation)."""
        r = problem.evaluate(patches, self.method)
        return {"loss": r.loss, "data_loss": r.data_loss, "regularization": r.regularization,
                "label_error": label_error_percent(r.tangent, problem.labels)}

    def fit(self, problem: LearningProblem, patches=None, *, checkpoint=None, resume: bool = False,
            overwrite: bool = False, callback=None, stop_after: int | None = None) -> LearningResult:
        """Run ``iters`` steps from ``patches`` (default: the problem's own weight patches).

        ``checkpoint``: path of a checkpoint file; an existing one is refused unless ``resume=True`` (continue
        it; it must belong to this learner and problem, else a :class:`UserInputError` names what differs) or
        ``overwrite=True``.  ``callback(iteration, record)`` is called after every step.  Under ``torchrun``
        every rank runs the same deterministic steps and only rank 0 writes the checkpoint.
        """
        if not isinstance(problem, LearningProblem):
            raise UserTypeError(f"problem must be a LearningProblem, got {type(problem).__name__}")
        p0 = problem.weights.patches if patches is None else patches
        param = problem.check_patches(p0).detach().clone()
        opt = OPTIMIZERS[self.optimizer]([param], lr=self.lr * (param.shape[0] if self.optimizer == "rgd" else 1.0))

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
