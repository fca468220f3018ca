r"""Training loop for the weight patches of one image: history, progress bar, checkpoints and resume.

>>> learner = WeightLearner(method="lowrank", optimizer="rgd", lr=1.0, iters=50)   # doctest: +SKIP
>>> result = learner.fit(problem)                                                   # doctest: +SKIP
>>> result.history[-1]["label_error"]                                               # doctest: +SKIP

Every iteration records ``iteration``, ``loss``, ``data_loss``, ``regularization``,
``label_error`` (percent of pixels whose :math:`\arg\max V_T` differs from the ground truth, at the
patches *before* the step), ``grad_norm`` (Riemannian) and ``seconds`` (cumulative gradient + step
time).  The run is deterministic, so a run resumed from a checkpoint ends exactly where an
uninterrupted one does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._checks import (
    UserInputError,
    UserTypeError,
    check_choice,
    check_int,
    check_positive,
)
from ..geometry import egrad2rgrad
from ..io import load_checkpoint, save_checkpoint
from ..progress import progress
from .gradients import GradientMethod, make_gradient_method
from .losses import LearningProblem
from .optim import RiemannianSGD, SimplexAdam

__all__ = ["LearningResult", "OPTIMIZERS", "WeightLearner", "label_error_percent"]

OPTIMIZERS = {"rgd": RiemannianSGD, "adam": SimplexAdam}


def label_error_percent(tangent: torch.Tensor, labels: torch.Tensor) -> float:
    """Percentage of nodes whose ``argmax`` of ``tangent`` differs from ``labels``."""
    return 100.0 * float((tangent.argmax(-1) != labels).double().mean())


@dataclass
class LearningResult:
    """Learned patches ``(I, N)``, the history (one dict per iteration, plus the final evaluation in
    ``final``), ``status`` (``"completed"``) and ``stats``."""

    patches: torch.Tensor
    history: list
    final: dict
    status: str = "completed"
    stats: dict = field(default_factory=dict)


class WeightLearner:
    r"""Learn weight patches by minimising :math:`\mathcal L(\Omega)` (paper 000, Sect. 3.1).

    Parameters
    ----------
    method : str or GradientMethod
        ``"lowrank"`` (default), ``"exact"``, ``"autodiff-euler"``, ``"autodiff-expint"`` or an instance.
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
    show_progress : bool
    """

    def __init__(self, method="lowrank", optimizer: str = "rgd", lr: float = 1.0, iters: int = 50,
                 checkpoint_every: int = 10, show_progress: bool = True):
        self.method = method if isinstance(method, GradientMethod) else make_gradient_method(method)
        check_choice("optimizer", optimizer, OPTIMIZERS)
        self.optimizer = optimizer
        self.lr = check_positive("lr", lr)
        self.iters = check_int("iters", iters, minimum=0)
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
        self.show_progress = bool(show_progress)

    def _config(self) -> dict:
        return {"method": repr(self.method), "optimizer": self.optimizer, "lr": self.lr}

    def _make_optimizer(self, param: torch.Tensor) -> torch.optim.Optimizer:
        scale = param.shape[0] if self.optimizer == "rgd" else 1.0
        return OPTIMIZERS[self.optimizer]([param], lr=self.lr * scale)

    def evaluate(self, problem: LearningProblem, patches) -> dict:
        """Loss and label error (percent) of ``patches`` on ``problem`` (one gradient evaluation)."""
        r = self.method(problem, patches)
        return {"loss": r.loss, "data_loss": r.data_loss, "regularization": r.regularization,
                "label_error": label_error_percent(r.tangent, problem.labels)}

    def fit(self, problem: LearningProblem, patches=None, *, checkpoint=None, callback=None) -> LearningResult:
        """Run ``iters`` steps from ``patches`` (default: the problem's own weight patches).

        ``checkpoint``: path of a checkpoint file; if it exists and was written with the same
        configuration the run resumes from it, and it is rewritten every ``checkpoint_every``
        iterations and at the end.  ``callback(iteration, record)`` is called after every step.
        """
        if not isinstance(problem, LearningProblem):
            raise UserTypeError(f"problem must be a LearningProblem, got {type(problem).__name__}")
        p0 = problem.weights.patches if patches is None else patches
        param = problem.check_patches(p0).detach().clone()
        opt = self._make_optimizer(param)
        history, start_iter = [], 0
        if checkpoint is not None:
            state = load_checkpoint(checkpoint)
            if state is not None:
                if state.get("config") != self._config():
                    raise UserInputError(f"checkpoint {str(checkpoint)!r} was written with {state.get('config')}, "
                                     f"not {self._config()}; use another checkpoint path")
                param.copy_(state["patches"].to(param))
                opt.load_state_dict(state["optimizer"])
                history, start_iter = list(state["history"]), int(state["iteration"])
        elapsed = history[-1]["seconds"] if history else 0.0
        bar = progress(range(start_iter, self.iters), total=self.iters, initial=start_iter, desc="learn",
                       enabled=None if self.show_progress else False)
        for it in bar:
            t0 = time.perf_counter()
            r = self.method(problem, param)
            param.grad = r.grad
            opt.step()
            param.grad = None
            elapsed += time.perf_counter() - t0
            record = {"iteration": it, "loss": r.loss, "data_loss": r.data_loss,
                      "regularization": r.regularization,
                      "label_error": label_error_percent(r.tangent, problem.labels),
                      "grad_norm": float(torch.linalg.vector_norm(egrad2rgrad(param, r.grad))),
                      "seconds": elapsed}
            history.append(record)
            bar.set_postfix(loss=f"{r.loss:.4f}", err=f"{record['label_error']:.2f}%")
            if callback is not None:
                callback(it, record)
            done = it + 1
            if checkpoint is not None and (done % self.checkpoint_every == 0 or done == self.iters):
                save_checkpoint(Path(checkpoint), {"iteration": done, "patches": param.detach().clone(),
                                                   "optimizer": opt.state_dict(), "history": history,
                                                   "config": self._config()})
        final = self.evaluate(problem, param)
        return LearningResult(patches=param.detach(), history=history, final=final,
                              stats={"iterations": len(history), "resumed_from": start_iter,
                                     "seconds": elapsed})
