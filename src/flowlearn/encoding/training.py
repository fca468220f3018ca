"""Training loops for gradient flow encoders and conventional autoencoders (:class:`Trainer`), and their
:class:`TrainConfig`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from .._checks import (UserInputError, UserTypeError, check_choice, check_int, check_positive, check_seed,
                       check_unit_interval)
from ..engine import BOOKKEEPING, CheckpointPolicy, RunResult, TrainState, run_identity, run_steps
from ..engine.distributed import world
from ..io import ensure_out_dir
from ..solvers.amd import AMD
from ..solvers.bb import BB
from .adjoint import ADJOINTS
from .data import ImageData
from .encoder import SOLVERS, GradientFlowEncoder, check_minimizers, solver_from_name
from .losses import loss_name, resolve_loss
from .models import Autoencoder, decoder_widths, make_decoder, make_encoder
from .schedule import SAMPLINGS, BatchSchedule

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
        Passes over the training subset (ignored when ``images`` is given).
    images : int or None
        Images seen in total, taken literally (the last batch is cut; fewer than one pass allowed).
    sampling : {"epochs", "replacement"}
        Reshuffled passes over the subset, or every batch drawn with replacement from it.
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
    images: Optional[int] = None
    sampling: str = "epochs"
    batch_size: int = 32
    latent_dim: Optional[int] = None
    eval_every: int = field(default=50, metadata=BOOKKEEPING)
    checkpoint_every: int = field(default=200, metadata=BOOKKEEPING)
    checkpoint_seconds: float = field(default=30.0, metadata=BOOKKEEPING)
    seed: int = 0
    t1: Optional[float] = None
    steps: int = 60
    grid: str = "log"

    def __post_init__(self):
        check_choice("model", self.model, MODELS)
        check_choice("solver", self.solver, SOLVERS)
        check_choice("adjoint", self.adjoint, ADJOINTS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("epochs", "batch_size", "eval_every", "checkpoint_every", "steps", "images", "latent_dim"):
            if getattr(self, name) is not None or name not in ("images", "latent_dim"):   # the last two optional
                check_int(name, getattr(self, name), minimum=1)
        for name in ("lr", "t1"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        check_choice("sampling", self.sampling, SAMPLINGS)
        check_positive("checkpoint_seconds", self.checkpoint_seconds, strict=False)
        check_seed("seed", self.seed)
        check_choice("grid", self.grid, ("log", "linear"))

    def solver_object(self, amd=None, bb=None):
        """The solver object this config stands for (:func:`~flowlearn.encoding.encoder.solver_from_name`): ``amd``,
        ``bb`` (default ``AMD()``, ``BB()``) or a ``FixedGrid``/``Nesterov`` built from ``t1``, ``steps``, ``grid``."""
        if self.solver in ("amd", "bb"):
            return solver_from_name(self.solver, amd=amd, bb=bb)
        return solver_from_name(self.solver, t1=self.t1, steps=self.steps, grid=self.grid)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-4 if self.optimizer == "rmsprop" else 1e-3)


@dataclass(kw_only=True)
class TrainResult(RunResult):
    """Outcome of :meth:`Trainer.fit`; ``status`` and ``stats`` are the engine's (:class:`~flowlearn.engine.RunResult`),
    ``stats`` adds ``steps``, ``images_seen``, ``wall_time``, ``train_size``.

    Attributes
    ----------
    module : GradientFlowEncoder or Autoencoder (trained)
    history : list of dict, one per evaluation
        ``step``, ``images_seen``, ``wall_time`` (training seconds), ``train_loss`` and ``val_bce``.
    val_bce, val_loss : float
        Final mean per-pixel validation BCE (NaN when the trainer's loss is not BCE) and trainer's loss.
    mixed_val_bce : float or None
        AE only: its decoder evaluated with AMD (GFE) encoding ("Mixed", paper Table 1).
    """

    module: torch.nn.Module
    val_bce: float
    mixed_val_bce: Optional[float] = None
    val_loss: Optional[float] = None


class Trainer:
    """Train a GFE decoder or a conventional AE on a training subset with RMSprop (paper settings: lr 5e-4,
    eps 1e-6, alpha 0.9) or Adam, evaluating the mean per-pixel BCE on the validation set along the way
    (against images seen and wall time, paper Fig. 1); checkpoints atomically and resumes exactly (batches
    depend only on the seed and the step).  Under ``torchrun`` every global batch is split over the ranks
    and each rank's loss scaled so that the all-reduced gradient is the one-process gradient.

    Parameters
    ----------
    config : TrainConfig
    amd, bb : AMD or BB, optional
        Solvers of ``config.solver="amd"`` (also for "Mixed" evaluation) and ``"bb"``.
    device : str or torch.device, optional
        Where to train (default: the data's device); outputs and the model stay there.
    decoder_factory : callable, optional
        ``(data_dim, latent_dim, dtype) -> nn.Module``, e.g. ``lambda P, d, dtype: ConvDecoder(d, 28, dtype=dtype)``:
        the decoder to train (the AE's encoder stays the mirrored MLP), called under the config's seed.
    loss : str or callable
        Training loss ``loss(recon, target) -> (B,)`` of both models and of the GFE's encoding.
    """

    def __init__(self, config: TrainConfig, amd: Optional[AMD] = None, device=None, *,
                 decoder_factory: Optional[Callable] = None, loss="bce", bb: Optional[BB] = None):
        if not isinstance(config, TrainConfig):
            raise UserTypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if decoder_factory is not None and not callable(decoder_factory):
            raise UserTypeError("decoder_factory must be a callable (data_dim, latent_dim, dtype) -> nn.Module, "
                                f"got {type(decoder_factory).__name__}")
        check_minimizers(amd, bb)
        self.config, self.decoder_factory = config, decoder_factory
        self.amd, self.bb = amd if amd is not None else AMD(), bb if bb is not None else BB()
        self.device = torch.device(device) if device is not None else None
        self.loss = resolve_loss(loss)
        self.metric = "val_bce" if loss_name(self.loss) == "bce" else "val_loss"

    def latent_dim(self, data_dim: int) -> int:
        """The code size for ``data_dim`` pixels (``config.latent_dim`` or the default)."""
        return decoder_widths(data_dim, self.config.latent_dim)[0]

    def _decoder(self, data_dim, latent, dtype):
        if self.decoder_factory is None:
            return make_decoder(data_dim, latent, dtype=dtype)
        dec = self.decoder_factory(data_dim, latent, dtype)
        if not isinstance(dec, torch.nn.Module):
            raise UserTypeError(f"decoder_factory must return a torch.nn.Module, got {type(dec).__name__}")
        return dec.to(dtype)

    def build(self, data_dim: int, dtype=torch.float32):
        """A freshly initialised model for ``data_dim`` pixels, seeded by ``config.seed`` inside
        ``torch.random.fork_rng`` (the caller's global random state is left untouched)."""
        cfg = self.config
        latent = self.latent_dim(data_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if cfg.model == "ae":    # the encoder first: the order of the random draws
                return Autoencoder(make_encoder(data_dim, latent, dtype=dtype), self._decoder(data_dim, latent, dtype))
            return GradientFlowEncoder(self._decoder(data_dim, latent, dtype), latent,
                                       solver=cfg.solver_object(self.amd, self.bb), adjoint=cfg.adjoint, loss=self.loss)

    def _optimizer(self, params):
        if self.config.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=self.config.learning_rate, eps=1e-6, alpha=0.9)
        return torch.optim.Adam(params, lr=self.config.learning_rate)

    def identity(self, train: torch.Tensor, val: torch.Tensor, model=None) -> dict:
        """Config, solver objects, loss, decoder and data that a resumed checkpoint must match."""
        decoder = None
        if self.decoder_factory is not None and model is not None:
            decoder = {"type": type(model.decoder).__qualname__, "initial": model.decoder.state_dict()}
        return run_identity("gfe.Trainer", config=self.config, solver=self.config.solver_object(self.amd, self.bb),
                            amd=self.amd, loss=self.loss, dtype=train.dtype, decoder=decoder, inputs=(train, val))

    def fit(self, data: ImageData, train_idx: Optional[torch.Tensor] = None, *, out_dir=None,
            desc: str = "train", resume: bool = False, overwrite: bool = False,
            stop_after: Optional[int] = None) -> TrainResult:
        """Train on ``data.train[train_idx]`` with :func:`flowlearn.engine.run_steps`, checkpointing to
        ``out_dir/checkpoint.pt``: an existing checkpoint is refused unless ``resume=True`` (it must belong to
        this config and data) or ``overwrite=True``.  ``history`` holds one record per evaluation (every
        ``eval_every`` steps and at the end); ``wall_time`` excludes evaluation time."""
        cfg = self.config
        train = data.train if train_idx is None else data.train[train_idx]
        val = data.val
        if self.device is not None:
            train, val = train.to(self.device), val.to(self.device)
        if len(train) == 0:
            raise UserInputError("the training subset is empty")
        if getattr(self.loss, "needs_unit_interval", False):
            for name, x in (("data.train", train), ("data.val", val)):
                check_unit_interval(name, x, hint="the BCE loss needs images in [0, 1]: scale them or pass loss='mse'")
        world_size, rank = world()
        model = self.build(data.data_dim, dtype=train.dtype).to(train.device)
        trained = model.decoder if cfg.model == "gfe" else model
        optimizer = self._optimizer(trained.parameters())
        ckpt_path = ensure_out_dir(out_dir, name="out_dir") / "checkpoint.pt" if out_dir is not None else None
        wrapped = trained
        if world_size > 1:
            wrapped = torch.nn.parallel.DistributedDataParallel(
                trained, device_ids=[train.device] if train.device.type == "cuda" else None)
        sched = BatchSchedule(len(train), cfg.batch_size, cfg.seed, epochs=cfg.epochs, images=cfg.images,
                              sampling=cfg.sampling)
        total = sched.total_steps
        metric, loss_fn = self.metric, self.loss
        counters = {"train_seconds": 0.0}          # saved with the checkpoint
        session = {"evals": 0, "steps": 0}          # this process only

        def step(it: int):
            t0 = time.perf_counter()
            batch = sched.batch(it).to(train.device)
            local = batch.tensor_split(world_size)[rank]
            y = train[local]
            optimizer.zero_grad(set_to_none=True)
            if cfg.model == "gfe":
                tl = model.training_loss(y, output_decoder=wrapped)
                loss = tl.loss
                session["evals"] += int(tl.encoding.decoder_evals.sum())
            else:
                loss = loss_fn(wrapped(y), y).mean()
            (loss * (len(local) * world_size / len(batch))).backward()
            optimizer.step()
            counters["train_seconds"] += time.perf_counter() - t0
            session["steps"] += 1
            done = it + 1
            if rank == 0 and (done % cfg.eval_every == 0 or done == total):
                return {"step": done, "images_seen": sched.images_after(done),
                        "wall_time": counters["train_seconds"], "train_loss": float(loss.detach()),
                        metric: evaluate(model, val, loss=loss_fn)}
            return None

        run = run_steps(step, iterations=total, state=TrainState(model=trained, optimizer=optimizer, counters=counters),
                        identity=self.identity(train, val, model),
                        checkpoint=CheckpointPolicy(ckpt_path, cfg.checkpoint_every, cfg.checkpoint_seconds, resume,
                                                    overwrite),
                        desc=desc, postfix=(metric,), stop_after=stop_after)
        history = run.history
        val_loss = history[-1][metric] if history and history[-1]["step"] == run.stats["iterations"] \
            else evaluate(model, val, loss=loss_fn)
        mixed = None
        if cfg.model == "ae" and rank == 0:
            mixed_gfe = GradientFlowEncoder(model.decoder, self.latent_dim(data.data_dim), amd=self.amd, loss=loss_fn)
            mixed = evaluate(mixed_gfe, val, loss=loss_fn)
        steps = run.stats["iterations"]
        stats = {**run.stats, "steps": steps, "images_seen": sched.images_after(steps),
                 "wall_time": counters["train_seconds"], "resumed_from_step": run.stats["resumed_from"],
                 "train_size": len(train)}
        if cfg.model == "gfe":
            stats["decoder_evals_per_image_this_session"] = session["evals"] / max(1, session["steps"] * cfg.batch_size)
        val_bce = val_loss if metric == "val_bce" else float("nan")
        return TrainResult(module=model, val_bce=val_bce, val_loss=val_loss, mixed_val_bce=mixed, status=run.status,
                           history=history, stats=stats)


def evaluate(model, images: torch.Tensor, *, batch_size: int = 512, loss="bce") -> float:
    """Mean per-sample ``loss`` of ``model``'s reconstructions of ``images`` (N, ...): a
    :class:`GradientFlowEncoder` (codes by its own solver and loss, z(0) = 0) or an :class:`Autoencoder`."""
    fn = resolve_loss(loss)
    total, n = 0.0, 0
    for chunk in images.split(batch_size):
        gfe = isinstance(model, GradientFlowEncoder)
        enc = model.encode(chunk) if gfe else None
        if gfe and (fn is model.loss_fn or fn == model.loss_fn):   # the encoder's own loss: reuse its values
            per = enc.loss
        else:
            with torch.no_grad():
                per = fn(model.decoder(enc.z) if gfe else model(chunk), chunk)
        total += float(per.sum())
        n += chunk.shape[0]
    return total / n
