"""Training loops for gradient flow encoders and conventional autoencoders.

One :class:`Trainer` trains either model on a training subset with RMSprop (paper settings: lr 5e-4,
eps 1e-6, alpha 0.9) or Adam, evaluates the mean per-pixel BCE on the held-out validation set along
the way (against images seen and wall time, paper Fig. 1), checkpoints atomically and resumes.
Batches of epoch ``e`` come from a permutation seeded by ``(seed, e)``, so a resumed run replays
exactly the batches of an uninterrupted one and ends with the same parameters.

Under ``torch.distributed`` (see :mod:`flowlearn.encoding.distributed`) every global batch is split
in equal parts over the ranks, the module is wrapped in ``DistributedDataParallel`` and each rank's
loss is scaled so that the all-reduced gradient equals the one-process gradient of the global batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.distributed as dist

from .._checks import (
    UserInputError,
    UserTypeError,
    check_choice,
    check_int,
    check_positive,
)
from ..io import ensure_out_dir, load_checkpoint, save_checkpoint
from ..progress import progress
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
        check_int("seed", self.seed, minimum=0)
        if self.latent_dim is not None:
            check_int("latent_dim", self.latent_dim, minimum=1)
        if self.t1 is not None:
            check_positive("t1", self.t1)
        check_int("steps", self.steps, minimum=1)
        check_choice("grid", self.grid, ("log", "linear"))

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-4 if self.optimizer == "rmsprop" else 1e-3)


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes
    ----------
    module : GradientFlowEncoder or Autoencoder (trained)
    history : list of dict
        ``step``, ``images_seen``, ``wall_time`` (s), ``train_loss`` and ``val_bce`` per evaluation.
    val_bce : float
        Final mean per-pixel validation BCE (GFE: AMD encoding; AE: its encoder).
    mixed_val_bce : float or None
        AE only: its decoder evaluated with AMD (GFE) encoding ("Mixed", paper Table 1).
    stats : dict
        ``steps``, ``images_seen``, ``wall_time``, ``resumed_from_step``, ``decoder_evals_per_image``.
    """

    module: torch.nn.Module
    history: list
    val_bce: float
    mixed_val_bce: Optional[float]
    stats: dict = field(default_factory=dict)


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


def _world():
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


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
        """A freshly initialised model (seeded by ``config.seed``) for ``data_dim`` pixels."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        latent = decoder_widths(data_dim, cfg.latent_dim)[0]
        if cfg.model == "ae":
            return Autoencoder.for_data(data_dim, latent, dtype=dtype)
        return GradientFlowEncoder(make_decoder(data_dim, latent, dtype=dtype), latent, solver=cfg.solver,
                                   adjoint=cfg.adjoint, t1=cfg.t1, steps=cfg.steps, grid=cfg.grid, amd=self.amd)

    def _optimizer(self, params):
        cfg = self.config
        if cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=cfg.learning_rate, eps=1e-6, alpha=0.9)
        return torch.optim.Adam(params, lr=cfg.learning_rate)

    def _batches(self, n: int, epoch: int) -> list:
        g = torch.Generator().manual_seed(self.config.seed * 100003 + epoch)
        return list(torch.randperm(n, generator=g).split(self.config.batch_size))

    def fit(self, data: ImageData, train_idx: Optional[torch.Tensor] = None, *, out_dir=None,
            desc: str = "train") -> TrainResult:
        """Train on ``data.train[train_idx]``; checkpoint to / resume from ``out_dir/checkpoint.pt``."""
        cfg = self.config
        train = data.train if train_idx is None else data.train[train_idx]
        val = data.val
        if self.device is not None:
            train, val = train.to(self.device), val.to(self.device)
        if len(train) == 0:
            raise UserInputError("the training subset is empty")
        world, rank = _world()
        model = self.build(data.data_dim, dtype=train.dtype).to(train.device)
        trained = model.decoder if cfg.model == "gfe" else model
        optimizer = self._optimizer(trained.parameters())
        ckpt_path = ensure_out_dir(out_dir, name="out_dir") / "checkpoint.pt" if out_dir is not None else None
        step, history, elapsed, resumed = 0, [], 0.0, 0
        state = load_checkpoint(ckpt_path) if ckpt_path is not None else None
        if state is not None:
            if state["config"] != asdict(cfg):
                raise UserInputError(f"checkpoint {ckpt_path} was written with a different configuration "
                                 f"{state['config']}; use another --out directory")
            trained.load_state_dict({k: v.to(train.device) for k, v in state["model"].items()})
            optimizer.load_state_dict(state["optimizer"])
            step, history, elapsed, resumed = state["step"], state["history"], state["wall_time"], state["step"]
        wrapped = trained
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [train.device] if train.device.type == "cuda" else None
            wrapped = DistributedDataParallel(trained, device_ids=device_ids)
        per_epoch = math.ceil(len(train) / cfg.batch_size)
        total = cfg.epochs * per_epoch
        evals = 0
        bar = progress(total=total, desc=desc, initial=step, enabled=None if rank == 0 else False)
        start = time.perf_counter() - elapsed
        train_loss = float("nan")
        while step < total:
            epoch, k = divmod(step, per_epoch)
            batch = self._batches(len(train), epoch)[k].to(train.device)
            local = batch.tensor_split(world)[rank]
            y = train[local]
            optimizer.zero_grad(set_to_none=True)
            if cfg.model == "gfe":
                tl = model.training_loss(y, output_decoder=wrapped)
                loss, evals = tl.loss, evals + int(tl.encoding.decoder_evals.sum())
            else:
                loss = reconstruction_loss(wrapped(y), y, "bce").mean()
            (loss * (len(local) * world / len(batch))).backward()
            optimizer.step()
            step += 1
            train_loss = float(loss.detach())
            bar.update(1)
            if rank == 0 and (step % cfg.eval_every == 0 or step == total):
                history.append({"step": step, "images_seen": step_images(step, per_epoch, len(train), cfg.batch_size),
                                "wall_time": time.perf_counter() - start, "train_loss": train_loss,
                                "val_bce": evaluate(model, val)})
                bar.set_postfix(val_bce=f"{history[-1]['val_bce']:.4f}")
            if ckpt_path is not None and rank == 0 and (step % cfg.checkpoint_every == 0 or step == total):
                save_checkpoint(ckpt_path, {"config": asdict(cfg), "model": trained.state_dict(),
                                            "optimizer": optimizer.state_dict(), "step": step,
                                            "history": history, "wall_time": time.perf_counter() - start})
        bar.close()
        val_bce = history[-1]["val_bce"] if history else evaluate(model, val)
        mixed = None
        if cfg.model == "ae" and rank == 0:
            latent = model.decoder[0].in_features
            mixed = evaluate(GradientFlowEncoder(model.decoder, latent, amd=self.amd), val)
        stats = {"steps": step, "images_seen": step_images(step, per_epoch, len(train), cfg.batch_size),
                 "wall_time": time.perf_counter() - start, "resumed_from_step": resumed,
                 "train_size": len(train), "world_size": world}
        if cfg.model == "gfe":
            stats["decoder_evals_per_image_this_session"] = evals / max(1, (step - resumed) * cfg.batch_size)
        return TrainResult(module=model, history=history, val_bce=val_bce, mixed_val_bce=mixed, stats=stats)


def step_images(step: int, per_epoch: int, n: int, batch_size: int) -> int:
    """Images seen after ``step`` optimizer steps (the last batch of an epoch may be short)."""
    epochs, k = divmod(step, per_epoch)
    return epochs * n + min(k * batch_size, n)
