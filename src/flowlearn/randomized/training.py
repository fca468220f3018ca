r"""Training a randomized assignment flow to approximate a Gibbs distribution.

Minimises (paper 001, eq. (14))

.. math::
    \mathrm{KL}[P : P^*] = -H(P) + \langle P, E\rangle + \log Z^*

over the parameters of the flow with Adam, with the objective of :mod:`.objective`; :math:`\log Z^*` is a
constant: when given, the history reports KL estimates, else free energies.

The loop is :func:`flowlearn.engine.run_steps`: a resumed run ends with exactly the parameters of an
uninterrupted run with the same seed.  The run's identity is the config's fields, the flow's constructor
arguments (``flow.hparams``), the model and the flow's initial parameters: a checkpoint of another run is
refused, naming what differs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .._checks import UserInputError, UserTypeError, check_choice, check_int, check_positive
from ..engine import BOOKKEEPING, EXTENDABLE, CheckpointPolicy, RunResult, TrainState, run_identity, run_steps
from ..engine.checkpoint import fingerprint
from ..engine.distributed import all_gather_cat, all_reduce_gradients, world
from ..engine.schedule import cosine_factor
from ..pgm.models import PairwiseModel
from .objective import batch_objective
from .sflow import RandomizedAssignmentFlow

__all__ = ["TrainingConfig", "TrainingResult", "train_randomized_flow"]


@dataclass(frozen=True)
class TrainingConfig:
    r"""Hyperparameters of :func:`train_randomized_flow`.

    Attributes
    ----------
    iterations : int
        Adam steps.  Not part of the run's identity (a resumed run may be extended), except as the horizon of the
        cosine schedule.
    batch_size : int
        Samples ``m`` per step (entropy estimator cost O(m^2 n c)).
    lr, lr_schedule : float, {"constant", "cosine"}
        Adam step length; ``"cosine"`` decays it to ``lr * final_lr_fraction``.
    seed : int
        Seeds the sampling generator.
    checkpoint_every, checkpoint_seconds : int, float
        Iterations, and seconds (0: never by time), between checkpoints (bookkeeping, not part of the identity).
    bias_correction : bool
        Miller--Madow term in the entropy estimate.
    energy_warmup : int
        Anneal the energy weight :math:`\beta` of :math:`\beta\langle P, E\rangle - H(P)` linearly from 0 to 1
        over this many iterations (0: no annealing, as in the paper), against early mode collapse.
    entropy_estimator : {"support", "samples", "score"}
        ``"score"``: :func:`~flowlearn.randomized.objective.entropy_score_surrogate`; ``"support"`` and
        ``"samples"`` (eq. (22)): :func:`~flowlearn.randomized.objective.differentiable_entropy`.
    random_roundings : int
        Extra random roundings per sample in the ``"support"`` estimator.
    data_shards : int
        The batch is drawn in this many equal shards, each from its own generator seeded by ``(seed, shard)``.
        Under ``torchrun`` every rank draws its own shards (a multiple of the world size) and the soft samples
        are gathered, so ``n`` processes take exactly the steps of one process.
    """

    iterations: int = field(default=5000, metadata=EXTENDABLE)
    batch_size: int = 256
    lr: float = 5e-3
    lr_schedule: str = "constant"
    final_lr_fraction: float = 0.05
    seed: int = 0
    checkpoint_every: int = field(default=500, metadata=BOOKKEEPING)
    bias_correction: bool = True
    energy_warmup: int = 0
    entropy_estimator: str = "support"
    random_roundings: int = 0
    checkpoint_seconds: float = field(default=30.0, metadata=BOOKKEEPING)
    data_shards: int = 1

    def __post_init__(self):
        for name, minimum in (("iterations", 0), ("batch_size", 2), ("seed", 0), ("checkpoint_every", 1),
                              ("energy_warmup", 0), ("random_roundings", 0), ("data_shards", 1)):
            check_int(name, getattr(self, name), minimum=minimum)
        check_positive("lr", self.lr)
        check_positive("final_lr_fraction", self.final_lr_fraction)
        check_positive("checkpoint_seconds", self.checkpoint_seconds, strict=False)
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        check_choice("entropy_estimator", self.entropy_estimator, ("support", "samples", "score"))
        if self.batch_size % self.data_shards:
            raise UserInputError(f"batch_size must be a multiple of data_shards ({self.data_shards}), "
                                 f"got {self.batch_size}")


@dataclass(kw_only=True)
class TrainingResult(RunResult):
    """Outcome of :func:`train_randomized_flow`: the trained ``flow`` and the engine's ``status``, ``history`` and
    ``stats``.  Every ``history`` record holds ``objective`` (KL estimate if ``log_z`` was given, else free
    energy), ``energy``, ``entropy``, ``support`` (distinct rounded samples in the batch) and ``node_entropy``
    (mean entropy of the soft end points)."""

    flow: RandomizedAssignmentFlow
    config: dict = field(default_factory=dict)

    @property
    def iterations_per_second(self) -> float:
        done = self.stats["iterations"] - self.stats["resumed_from"]
        return done / self.stats["seconds"] if self.stats["seconds"] > 0 else float("nan")

    def series(self, key: str) -> list:
        """One history column, e.g. ``series("objective")``."""
        return [h[key] for h in self.history]


def _lr_lambda(config: TrainingConfig):
    if config.lr_schedule == "constant":
        return lambda step: 1.0
    return lambda step: cosine_factor(step, config.iterations, config.final_lr_fraction)


def train_randomized_flow(flow: RandomizedAssignmentFlow, model: PairwiseModel,
                          config: TrainingConfig | None = None, *, log_z: float | None = None,
                          checkpoint_path=None, resume: bool = False, overwrite: bool = False,
                          show_progress: bool | None = None, stop_after: int | None = None,
                          callback=None) -> TrainingResult:
    r"""Fit ``flow`` to the Gibbs distribution of ``model`` by minimising eq. (14) with Adam.

    Parameters
    ----------
    flow : RandomizedAssignmentFlow
        Trained in place; ``flow.num_nodes/num_labels`` must match the ``model``.
    log_z : float, optional
        :math:`\log Z^*` to report KL estimates instead of free energies.
    checkpoint_path : path, optional
        Written atomically every ``config.checkpoint_every`` iterations, every ``config.checkpoint_seconds``
        and at the end.
    resume, overwrite : bool
        Continue from an existing ``checkpoint_path`` (a checkpoint of another run is refused, naming what
        differs), or start afresh replacing it; with neither, an existing checkpoint is refused.
    stop_after : int, optional
        Stop after this many total iterations (a time-sliced run); ``status`` is then ``INTERRUPTED``.
    """
    config = config or TrainingConfig()
    if not isinstance(flow, RandomizedAssignmentFlow):
        raise UserTypeError(f"flow must be a RandomizedAssignmentFlow, got {type(flow).__name__}")
    if (flow.num_nodes, flow.num_labels) != (model.num_nodes, model.num_labels):
        raise UserInputError(f"flow has (n, c) = {(flow.num_nodes, flow.num_labels)} but model has "
                             f"{(model.num_nodes, model.num_labels)}")
    world_size, rank = world()
    if config.data_shards % world_size:
        raise UserInputError(f"data_shards must be a multiple of the world size {world_size}, "
                             f"got {config.data_shards}")
    model = model.to(device=flow.device, dtype=flow.dtype)
    per_rank = config.data_shards // world_size  # contiguous shards, so the gathered batch keeps its order
    shards = list(range(rank * per_rank, (rank + 1) * per_rank))
    generators = [torch.Generator(device=flow.device).manual_seed(config.seed + 7919 * k) for k in shards]
    if config.data_shards == 1:
        shared = generators[0]  # one generator for the samples and the estimator's roundings
    else:  # the estimator's randomness must be the same on every rank
        shared = torch.Generator(device=flow.device).manual_seed(config.seed + 1_000_003)
        generators.append(shared)
    samplers = generators[:len(shards)]
    optimizer = torch.optim.Adam(flow.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    per_shard = config.batch_size // config.data_shards
    offset = float(log_z) if log_z is not None else 0.0
    identity = run_identity("train_randomized_flow", config=config, flow=flow,
                            lr_horizon=config.iterations if config.lr_schedule == "cosine" else None,
                            model=fingerprint(model.unary, model.edges, model.pairwise), inputs=flow.state_dict())

    def step(it: int) -> dict:
        optimizer.zero_grad(set_to_none=True)
        beta = min(1.0, (it + 1) / config.energy_warmup) if config.energy_warmup else 1.0
        local = torch.cat([flow(per_shard, g) for g in samplers])
        log_s = all_gather_cat(local)
        loss, energy, entropy = batch_objective(log_s, model, shared, bias_correction=config.bias_correction,
                                                energy_weight=beta, entropy_estimator=config.entropy_estimator,
                                                random_roundings=config.random_roundings)
        loss.backward()
        all_reduce_gradients(flow.parameters())
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            support = torch.unique(log_s.argmax(-1), dim=0).shape[0]
            node_h = float(-(log_s.exp() * log_s).sum(-1).mean())
        return {"objective": float(energy.detach() - entropy.detach()) + offset, "energy": float(energy.detach()),
                "entropy": float(entropy.detach()), "support": float(support), "node_entropy": node_h}

    state = TrainState(flow=flow, optimizer=optimizer, scheduler=scheduler, generators=generators)
    run = run_steps(step, iterations=config.iterations, state=state, identity=identity,
                    checkpoint=CheckpointPolicy(checkpoint_path, config.checkpoint_every, config.checkpoint_seconds,
                                                resume=resume, overwrite=overwrite),
                    desc="train randomized flow", show_progress=show_progress, postfix=("objective",),
                    stop_after=stop_after, callback=callback)
    return TrainingResult(flow=flow, config=asdict(config), status=run.status, history=run.history, stats=run.stats)
