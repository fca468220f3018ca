"""Training loops for gradient flow encoders and conventional autoencoders.

One :class:`Trainer` trains either model on a training subset with RMSprop (paper settings: lr 5e-4,
eps 1e-6, alpha 0.9) or Adam, evaluates the mean per-pixel BCE on the held-out validation set along
the way (against images seen and wall time, paper Fig. 1), checkpoints atomically and resumes.
Batches of epoch ``e`` come from a permutation seeded by ``(seed, e)``, so a resumed run replays
exactly the batches of an uninterrupted one and ends with the same parameters.

Under ``torchrun`` (see :mod:`flowlearn.engine.distributed`) every global batch is split
in equal parts over the ranks, the module is wrapped in ``DistributedDataParallel`` and each rank's
loss is scaled so that the all-reduced gradient equals the one-process gradient of the global batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Optional

import torch

from .._checks import (
    UserInputError,
    UserTypeError,
    check_choice,
    check_int,
    check_positive,
    check_seed,
    check_unit_interval,
)
from ..engine import (
    CheckpointPolicy,
    RunResult,
    fingerprint,
    load_module_state,
    run_steps,
    world,
)
from ..io import ensure_out_dir
from ..solvers.amd import AMD
from .adjoint import ADJOINTS
from .data import ImageData
from .encoder import SOLVERS, GradientFlowEncoder
from .flows import reconstruction_loss
from .models import Autoencoder, decoder_widths, make_decoder

__all__ = ["MODELS", "OPTIMIZERS", "TrainConfig", "TrainResult", "Trainer", "evaluate"]

MODELS = ("gfe", "ae")
OPTIMIZERS = ("rmsprop", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (validated on construction).

    Attributes
    ----------
    model : {"gfe", "ae"}
    solver, adjoint : encoding solver and training gradient of the GFE (ignored for the AE)
    optimizer : {"rmsprop", "adam"}
    lr : float or None
        Default 5e-4 (RMSprop, paper) or 1e-3 (Adam).
    epochs : int
        Passes over the training subset.
    batch_size : int
    latent_dim : int or None
        Default from :func:`~flowlearn.encoding.models.decoder_widths`.
    eval_every : int
        Evaluate the validation BCE every this many optimizer steps (and at the end).
    checkpoint_every : int
        Optimizer steps between checkpoints.
    checkpoint_seconds : float
        Also checkpoint when this many seconds have passed since the last one (0: never by time).
    seed : int
        Seeds the initialisation and the batch order.
    t1, steps, grid : fixed-grid solver settings of the GFE.
    """

    model: str = "gfe"
    solver: str = "amd"
    adjoint: str = "approx"
    optimizer: str = "rmsprop"
    lr: Optional[float] = None
    epochs: int = 1
    batch_size: int = 32
    latent_dim: Optional[int] = None
    eval_every: int = 50
    checkpoint_every: int = 200
    checkpoint_seconds: float = 30.0
    seed: int = 0
    t1: Optional[float] = None
    steps: int = 60
    grid: str = "log"

    def __post_init__(self):
        check_choice("model", self.model, MODELS)
        check_choice("solver", self.solver, SOLVERS)
        check_choice("adjoint", self.adjoint, ADJOINTS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.lr is not None:
            check_positive("lr", self.lr)
        for name in ("epochs", "batch_size", "eval_every", "checkpoint_every"):
            check_int(name, getattr(self, name), minimum=1)
        check_positive("checkpoint_seconds", self.checkpoint_seconds, strict=False)
        check_seed("seed", self.seed)
        if self.latent_dim is not None:
            check_int("latent_dim", self.latent_dim, minimum=1)
        if self.t1 is not None:
            check_positive("t1", self.t1)
        check_int("steps", self.steps, minimum=1)
        check_choice("grid", self.grid, ("log", "linear"))

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-4 if self.optimizer == "rmsprop" else 1e-3)


@dataclass(kw_only=True)
class TrainResult(RunResult):
    """Outcome of :meth:`Trainer.fit`.

    Attributes
    ----------
    module : GradientFlowEncoder or Autoencoder (trained)
    history : list of dict
        ``step``, ``images_seen``, ``wall_time`` (training seconds), ``train_loss`` and ``val_bce`` per
        evaluation.
    val_bce : float
        Final mean per-pixel validation BCE (GFE: AMD encoding; AE: its encoder).
    mixed_val_bce : float or None
        AE only: its decoder evaluated with AMD (GFE) encoding ("Mixed", paper Table 1).
    status, stats
        The engine's; ``stats`` adds ``steps``, ``images_seen``, ``wall_time``, ``train_size``.
    """

    module: torch.nn.Module
    val_bce: float
    mixed_val_bce: Optional[float] = None


def evaluate(model, images: torch.Tensor, *, batch_size: int = 512) -> float:
    """Mean per-pixel BCE of ``model``'s reconstructions of ``images`` (N, P).

    ``model`` is a :class:`GradientFlowEncoder` (codes by its own solver, z(0) = 0) or an
    :class:`Autoencoder` (codes by its encoder).
    """
    total, n = 0.0, 0
    for chunk in images.split(batch_size):
        if isinstance(model, GradientFlowEncoder):
            per = model.encode(chunk).loss
        else:
            with torch.no_grad():
                per = reconstruction_loss(model(chunk), chunk, "bce")
        total += float(per.sum())
        n += chunk.shape[0]
    return total / n


class Trainer:
    """Train a GFE decoder or a conventional AE (see module docstring).

    Parameters
    ----------
    config : TrainConfig
    amd : AMD or None
        Solver for GFE encodings and for "Mixed" evaluation (default paper settings).
    device : str or torch.device, optional
        Where to train (default: the data's device); outputs and the model stay there.
    """

    def __init__(self, config: TrainConfig, amd: Optional[AMD] = None, device=None):
        if not isinstance(config, TrainConfig):
            raise UserTypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.amd = amd if amd is not None else AMD()
        self.device = torch.device(device) if device is not None else None

    def build(self, data_dim: int, dtype=torch.float32):
        """A freshly initialised model (seeded by ``config.seed``) for ``data_dim`` pixels.

        The initialisation draws from torch's generator seeded with ``config.seed`` inside
        ``torch.random.fork_rng``, so the caller's global random state is left untouched.
        """
        cfg = self.config
        latent = decoder_widths(data_dim, cfg.latent_dim)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if cfg.model == "ae":
                return Autoencoder.for_data(data_dim, latent, dtype=dtype)
            return GradientFlowEncoder(make_decoder(data_dim, latent, dtype=dtype), latent, solver=cfg.solver,
                                       adjoint=cfg.adjoint, t1=cfg.t1, steps=cfg.steps, grid=cfg.grid,
                                       amd=self.amd)

    def _optimizer(self, params):
        cfg = self.config
        if cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=cfg.learning_rate, eps=1e-6, alpha=0.9)
        return torch.optim.Adam(params, lr=cfg.learning_rate)

    def _batches(self, n: int, epoch: int) -> list:
        g = torch.Generator().manual_seed(self.config.seed * 100003 + epoch)
        return list(torch.randperm(n, generator=g).split(self.config.batch_size))

    def identity(self, train: torch.Tensor, val: torch.Tensor) -> dict:
        """Config and data fingerprint that a resumed checkpoint must match."""
        cfg = asdict(self.config)
        for k in ("checkpoint_every", "checkpoint_seconds", "eval_every"):
            cfg.pop(k, None)
        return {"trainer": "gfe.Trainer", "config": cfg, "amd": repr(self.amd), "dtype": str(train.dtype),
                "data": fingerprint(train, val)}

    def fit(self, data: ImageData, train_idx: Optional[torch.Tensor] = None, *, out_dir=None,
            desc: str = "train", resume: bool = True, stop_after: Optional[int] = None) -> TrainResult:
        """Train on ``data.train[train_idx]``; checkpoint to / resume from ``out_dir/checkpoint.pt``.

        The loop is :func:`flowlearn.engine.run_steps`; ``history`` holds one record per evaluation
        (every ``eval_every`` steps and at the end) with ``wall_time``: training seconds, evaluation
        time excluded.
        """
        cfg = self.config
        train = data.train if train_idx is None else data.train[train_idx]
        val = data.val
        if self.device is not None:
            train, val = train.to(self.device), val.to(self.device)
        if len(train) == 0:
            raise UserInputError("the training subset is empty")
        for name, x in (("data.train", train), ("data.val", val)):
            check_unit_interval(name, x, hint="both models use the BCE loss: scale the images to [0, 1]")
        world_size, rank = world()
        model = self.build(data.data_dim, dtype=train.dtype).to(train.device)
        trained = model.decoder if cfg.model == "gfe" else model
        optimizer = self._optimizer(trained.parameters())
        ckpt_path = ensure_out_dir(out_dir, name="out_dir") / "checkpoint.pt" if out_dir is not None else None
        wrapped = trained
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [train.device] if train.device.type == "cuda" else None
            wrapped = DistributedDataParallel(trained, device_ids=device_ids)
        per_epoch = math.ceil(len(train) / cfg.batch_size)
        total = cfg.epochs * per_epoch
        counters = _Counters(trained, optimizer)

        def step(it: int):
            t0 = time.perf_counter()
            epoch, k = divmod(it, per_epoch)
            batch = self._batches(len(train), epoch)[k].to(train.device)
            local = batch.tensor_split(world_size)[rank]
            y = train[local]
            optimizer.zero_grad(set_to_none=True)
            if cfg.model == "gfe":
                tl = model.training_loss(y, output_decoder=wrapped)
                loss = tl.loss
                counters.evals += int(tl.encoding.decoder_evals.sum())
            else:
                loss = reconstruction_loss(wrapped(y), y, "bce").mean()
            (loss * (len(local) * world_size / len(batch))).backward()
            optimizer.step()
            counters.train_seconds += time.perf_counter() - t0
            counters.steps_here += 1
            done = it + 1
            if rank == 0 and (done % cfg.eval_every == 0 or done == total):
                return {"step": done, "images_seen": step_images(done, per_epoch, len(train), cfg.batch_size),
                        "wall_time": counters.train_seconds, "train_loss": float(loss.detach()),
                        "val_bce": evaluate(model, val)}
            return None

        run = run_steps(step, iterations=total, state=counters, identity=self.identity(train, val),
                        checkpoint=CheckpointPolicy(ckpt_path, cfg.checkpoint_every, cfg.checkpoint_seconds, resume),
                        desc=desc, postfix=("val_bce",), stop_after=stop_after)
        history = run.history
        val_bce = history[-1]["val_bce"] if history and history[-1]["step"] == run.stats["iterations"] \
            else evaluate(model, val)
        mixed = None
        if cfg.model == "ae" and rank == 0:
            latent = model.decoder[0].in_features
            mixed = evaluate(GradientFlowEncoder(model.decoder, latent, amd=self.amd), val)
        steps = run.stats["iterations"]
        stats = {**run.stats, "steps": steps, "images_seen": step_images(steps, per_epoch, len(train), cfg.batch_size),
                 "wall_time": counters.train_seconds, "resumed_from_step": run.stats["resumed_from"],
                 "train_size": len(train)}
        if cfg.model == "gfe":
            stats["decoder_evals_per_image_this_session"] = counters.evals / max(1, counters.steps_here * cfg.batch_size)
        return TrainResult(module=model, val_bce=val_bce, mixed_val_bce=mixed, status=run.status,
                           history=history, stats=stats)


class _Counters:
    """The mutable training state of :meth:`Trainer.fit` (module, optimizer, training seconds)."""

    def __init__(self, module, optimizer):
        self.module, self.optimizer = module, optimizer
        self.train_seconds, self.evals, self.steps_here = 0.0, 0, 0

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict) -> None:
        load_module_state(self.module, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_seconds = float(state["train_seconds"])


def step_images(step: int, per_epoch: int, n: int, batch_size: int) -> int:
    """Images seen after ``step`` optimizer steps (the last batch of an epoch may be short)."""
    epochs, k = divmod(step, per_epoch)
    return epochs * n + min(k * batch_size, n)
