r"""Training a randomized assignment flow to approximate a Gibbs distribution.

Minimises (paper 001, eq. (14))

.. math::
    \mathrm{KL}[P : P^*] = -H(P) + \langle P, E\rangle + \log Z^*

over the parameters of the flow with Adam: :math:`\langle P, E\rangle` is the mean over a batch
of the mean-field energies of the soft samples :math:`S^l` (eq. (17)), and :math:`-H(P)` the
differentiable estimator (22)/(23) with Miller--Madow correction (20).  :math:`\log Z^*` is a
constant: when given, the history reports KL estimates, else free energies.

Checkpoints hold the flow, optimizer, scheduler, random generator and history, so a resumed
run ends with exactly the parameters of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .._checks import (
    UserInputError,
    UserTypeError,
    check_choice,
    check_int,
    check_positive,
)
from ..io import load_checkpoint, save_checkpoint
from ..progress import progress
from .entropy import differentiable_entropy, entropy_score_surrogate
from .models import PairwiseModel
from .sflow import RandomizedAssignmentFlow

__all__ = ["TrainingConfig", "TrainingResult", "kl_objective", "train_randomized_flow"]


@dataclass(frozen=True)
class TrainingConfig:
    r"""Hyperparameters of :func:`train_randomized_flow`.

    Attributes
    ----------
    iterations : int
        Adam steps (paper: 5000).
    batch_size : int
        Samples ``m`` per step (entropy estimator cost O(m^2 n c)).
    lr : float
        Adam step length (paper: 5e-3 for Table 1).
    lr_schedule : {"constant", "cosine"}
        ``"cosine"`` decays the step length to ``lr * final_lr_fraction``.
    final_lr_fraction : float
    seed : int
        Seeds the sampling generator (the flow's initial parameters are deterministic).
    checkpoint_every : int
        Iterations between checkpoints (when a checkpoint path is given).
    bias_correction : bool
        Miller--Madow term in the entropy estimate.
    energy_warmup : int
        Anneal the energy weight :math:`\beta` linearly from 0 to 1 over this many iterations
        (objective :math:`\beta\langle P, E\rangle - H(P)`; 0 = no annealing, as in the paper).
        Starting hot keeps the samples diverse and avoids early mode collapse.
    entropy_estimator : {"support", "samples"}
        See :func:`flowlearn.randomized.differentiable_entropy` (``"samples"`` is eq. (22)).
    random_roundings : int
        Extra random roundings per sample in the ``"support"`` estimator.
    """

    iterations: int = 5000
    batch_size: int = 256
    lr: float = 5e-3
    lr_schedule: str = "constant"
    final_lr_fraction: float = 0.05
    seed: int = 0
    checkpoint_every: int = 500
    bias_correction: bool = True
    energy_warmup: int = 0
    entropy_estimator: str = "support"
    random_roundings: int = 0

    def __post_init__(self):
        check_int("iterations", self.iterations, minimum=0)
        check_int("batch_size", self.batch_size, minimum=2)
        check_positive("lr", self.lr)
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        check_positive("final_lr_fraction", self.final_lr_fraction)
        check_int("seed", self.seed, minimum=0)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1)
        check_int("energy_warmup", self.energy_warmup, minimum=0)
        check_choice("entropy_estimator", self.entropy_estimator, ("support", "samples", "score"))
        check_int("random_roundings", self.random_roundings, minimum=0)


@dataclass
class TrainingResult:
    """Outcome of :func:`train_randomized_flow`.

    ``history`` maps ``"objective"`` (KL estimate if ``log_z`` was given, else free energy),
    ``"energy"``, ``"entropy"``, ``"support"`` (distinct rounded samples per batch) and
    ``"node_entropy"`` (mean entropy of the soft end points: 0 when samples are integral) to
    one value per iteration.
    """

    flow: RandomizedAssignmentFlow
    history: dict[str, list[float]]
    iterations: int
    seconds: float
    status: str
    resumed_from: int
    config: dict = field(default_factory=dict)

    @property
    def iterations_per_second(self) -> float:
        done = self.iterations - self.resumed_from
        return done / self.seconds if self.seconds > 0 else float("nan")


def kl_objective(flow: RandomizedAssignmentFlow, model: PairwiseModel, batch_size: int,
                 generator: torch.Generator | None = None, *, bias_correction: bool = True,
                 energy_weight: float = 1.0, entropy_estimator: str = "support", random_roundings: int = 0):
    r"""One stochastic estimate of :math:`-H(P) + \beta\langle P, E\rangle` (eq. (14) without log Z*).

    Returns ``(objective, energy, entropy, log_samples)``; ``objective`` is differentiable,
    ``energy`` and ``entropy`` are the unweighted estimates.
    """
    log_s = flow(batch_size, generator)
    energy = model.mean_field_energy(log_s.exp()).mean()
    if entropy_estimator == "score":
        surrogate, entropy = entropy_score_surrogate(log_s, num_roundings=max(random_roundings, 1),
                                                     generator=generator)
        return energy_weight * energy + surrogate, energy, entropy, log_s
    entropy = differentiable_entropy(log_s, estimator=entropy_estimator, bias_correction=bias_correction,
                                     random_roundings=random_roundings, generator=generator)
    return energy_weight * energy - entropy, energy, entropy, log_s


def _lr_lambda(config: TrainingConfig):
    if config.lr_schedule == "constant":
        return lambda step: 1.0
    total = max(config.iterations, 1)
    lo = config.final_lr_fraction
    return lambda step: lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def train_randomized_flow(flow: RandomizedAssignmentFlow, model: PairwiseModel,
                          config: TrainingConfig | None = None, *, log_z: float | None = None,
                          checkpoint_path=None, resume: bool = True, show_progress: bool | None = None,
                          stop_after: int | None = None) -> TrainingResult:
    r"""Fit ``flow`` to the Gibbs distribution of ``model`` by minimising eq. (14) with Adam.

    Parameters
    ----------
    flow : RandomizedAssignmentFlow
        Trained in place (also returned in the result).
    model : PairwiseModel
        Target energy; ``flow.num_nodes/num_labels`` must match.
    config : TrainingConfig
    log_z : float, optional
        :math:`\log Z^*` to report KL estimates instead of free energies.
    checkpoint_path : path, optional
        Written atomically every ``config.checkpoint_every`` iterations and at the end.
    resume : bool
        Continue from ``checkpoint_path`` when it exists.
    stop_after : int, optional
        Stop after this many total iterations (simulates an interrupted run); ``status`` is
        then ``"interrupted"``.

    Returns
    -------
    TrainingResult
    """
    config = config or TrainingConfig()
    if not isinstance(flow, RandomizedAssignmentFlow):
        raise UserTypeError(f"flow must be a RandomizedAssignmentFlow, got {type(flow).__name__}")
    if (flow.num_nodes, flow.num_labels) != (model.num_nodes, model.num_labels):
        raise UserInputError(f"flow has (n, c) = {(flow.num_nodes, flow.num_labels)} but model has "
                         f"{(model.num_nodes, model.num_labels)}")
    model = model.to(device=flow.device, dtype=flow.dtype)
    generator = torch.Generator(device=flow.device)
    generator.manual_seed(config.seed)
    optimizer = torch.optim.Adam(flow.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    keys = ("objective", "energy", "entropy", "support", "node_entropy")
    history: dict[str, list[float]] = {k: [] for k in keys}
    start = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and resume:
        state = load_checkpoint(path)
        if state is not None:
            if state.get("config") != asdict(config):
                raise UserInputError(f"checkpoint {str(path)!r} was written with a different config "
                                 f"{state.get('config')}; use another path or resume=False (CLI: --no-resume)")
            flow.load_state_dict(state["flow"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"])
            history = state["history"]
            start = int(state["iteration"])

    def checkpoint(iteration: int) -> None:
        if path is not None:
            save_checkpoint(path, {"flow": flow.state_dict(), "optimizer": optimizer.state_dict(),
                                   "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                                   "history": history, "iteration": iteration, "config": asdict(config)})

    if stop_after is None:
        end = config.iterations
    else:
        end = min(config.iterations, check_int("stop_after", stop_after, minimum=0))
    offset = float(log_z) if log_z is not None else 0.0
    t0 = time.perf_counter()
    bar = progress(range(start, end), total=end - start, desc="train randomized flow", enabled=show_progress)
    for it in bar:
        optimizer.zero_grad(set_to_none=True)
        beta = min(1.0, (it + 1) / config.energy_warmup) if config.energy_warmup else 1.0
        loss, energy, entropy, log_s = kl_objective(flow, model, config.batch_size, generator,
                                                    bias_correction=config.bias_correction, energy_weight=beta,
                                                    entropy_estimator=config.entropy_estimator,
                                                    random_roundings=config.random_roundings)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            rounded = log_s.argmax(-1)
            support = torch.unique(rounded, dim=0).shape[0]
            node_h = float(-(log_s.exp() * log_s).sum(-1).mean())
        history["objective"].append(float(energy.detach() - entropy.detach()) + offset)
        history["energy"].append(float(energy.detach()))
        history["entropy"].append(float(entropy.detach()))
        history["support"].append(float(support))
        history["node_entropy"].append(node_h)
        if (it + 1) % 50 == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(objective=f"{history['objective'][-1]:.3f}")
        if (it + 1) % config.checkpoint_every == 0:
            checkpoint(it + 1)
    seconds = time.perf_counter() - t0
    checkpoint(end)
    status = "completed" if end == config.iterations else "interrupted"
    return TrainingResult(flow=flow, history=history, iterations=end, seconds=seconds, status=status,
                          resumed_from=start, config=asdict(config))
