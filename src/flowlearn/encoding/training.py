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

import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .._checks import (
    UserInputError,
    UserTypeError,
    check_unit_interval,
)
from ..engine import CheckpointPolicy, RunResult, TrainState, run_identity, run_steps
from ..engine.distributed import world
from ..io import ensure_out_dir
from ..solvers.amd import AMD
from ..solvers.bb import BB
from .config import MODELS, OPTIMIZERS, TrainConfig
from .data import ImageData
from .encoder import GradientFlowEncoder, check_minimizers
from .losses import loss_name, resolve_loss
from .models import Autoencoder, decoder_widths, make_decoder, make_encoder
from .schedule import BatchSchedule

__all__ = ["MODELS", "OPTIMIZERS", "TrainConfig", "TrainResult", "Trainer", "evaluate"]



@dataclass(kw_only=True)
class TrainResult(RunResult):
    """Outcome of :meth:`Trainer.fit`.

    ``status`` and ``stats`` are the engine's (:class:`~flowlearn.engine.RunResult`); ``stats`` adds
    ``steps``, ``images_seen``, ``wall_time``, ``train_size``.

    Attributes
    ----------
    module : GradientFlowEncoder or Autoencoder (trained)
    history : list of dict
        ``step``, ``images_seen``, ``wall_time`` (training seconds), ``train_loss`` and ``val_bce`` per
        evaluation.
    val_bce : float
        Final mean per-pixel validation BCE (GFE: AMD encoding; AE: its encoder); NaN when the
        trainer's loss is not BCE.
    mixed_val_bce : float or None
        AE only: its decoder evaluated with AMD (GFE) encoding ("Mixed", paper Table 1).
    val_loss : float or None
        Final validation value of the trainer's loss (equal to ``val_bce`` for BCE).
    """

    module: torch.nn.Module
    val_bce: float
    mixed_val_bce: Optional[float] = None
    val_loss: Optional[float] = None


class Trainer:
    """Train a GFE decoder or a conventional AE (see module docstring).

    Parameters
    ----------
    config : TrainConfig
    amd : AMD or None
        Solver for GFE encodings and for "Mixed" evaluation (default paper settings).
    bb : BB or None
        Solver of ``config.solver="bb"`` (default ``BB()``).
    device : str or torch.device, optional
        Where to train (default: the data's device); outputs and the model stay there.
    decoder_factory : callable, optional
        ``decoder_factory(data_dim, latent_dim, dtype) -> nn.Module``: the decoder to train (GFE) or
        the AE's decoder (its encoder stays the mirrored MLP); called under the config's seed.
        Default: :func:`~flowlearn.encoding.models.make_decoder`.  E.g.
        ``lambda P, d, dtype: ConvDecoder(d, 28, dtype=dtype)``.
    loss : str or callable
        Training loss ``loss(recon, target) -> (B,)`` of both models and of the GFE's encoding
        (see :mod:`flowlearn.encoding.losses`); default BCE.
    """

    def __init__(self, config: TrainConfig, amd: Optional[AMD] = None, device=None, *,
                 decoder_factory: Optional[Callable] = None, loss="bce", bb: Optional[BB] = None):
        if not isinstance(config, TrainConfig):
            raise UserTypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if decoder_factory is not None and not callable(decoder_factory):
            raise UserTypeError("decoder_factory must be a callable (data_dim, latent_dim, dtype) -> nn.Module, "
                                f"got {type(decoder_factory).__name__}")
        self.config = config
        check_minimizers(amd, bb)
        self.amd = amd if amd is not None else AMD()
        self.bb = bb if bb is not None else BB()
        self.device = torch.device(device) if device is not None else None
        self.decoder_factory = decoder_factory
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
        """A freshly initialised model (seeded by ``config.seed``) for ``data_dim`` pixels.

        The initialisation draws from torch's generator seeded with ``config.seed`` inside
        ``torch.random.fork_rng``, so the caller's global random state is left untouched.
        """
        cfg = self.config
        latent = self.latent_dim(data_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if cfg.model == "ae":
                return Autoencoder(make_encoder(data_dim, latent, dtype=dtype), self._decoder(data_dim, latent, dtype))
            return GradientFlowEncoder(self._decoder(data_dim, latent, dtype), latent, solver=cfg.solver_object(self.amd, self.bb),
                                       adjoint=cfg.adjoint, loss=self.loss)

    def _optimizer(self, params):
        cfg = self.config
        if cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=cfg.learning_rate, eps=1e-6, alpha=0.9)
        return torch.optim.Adam(params, lr=cfg.learning_rate)

    def schedule(self, n: int) -> BatchSchedule:
        """The batches of a run on ``n`` training images."""
        cfg = self.config
        return BatchSchedule(n, cfg.batch_size, cfg.seed, epochs=cfg.epochs, images=cfg.images, sampling=cfg.sampling)

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
        """Train on ``data.train[train_idx]``; checkpoint to ``out_dir/checkpoint.pt``.

        An existing checkpoint there is refused unless ``resume=True`` (continue it; it must belong to
        this config and data) or ``overwrite=True`` (start afresh).

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
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [train.device] if train.device.type == "cuda" else None
            wrapped = DistributedDataParallel(trained, device_ids=device_ids)
        sched = self.schedule(len(train))
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
    """Mean per-sample ``loss`` (default BCE) of ``model``'s reconstructions of ``images`` (N, ...).

    ``model`` is a :class:`GradientFlowEncoder` (codes by its own solver and loss, z(0) = 0) or an
    :class:`Autoencoder` (codes by its encoder).
    """
    fn = resolve_loss(loss)
    total, n = 0.0, 0
    for chunk in images.split(batch_size):
        if isinstance(model, GradientFlowEncoder):
            enc = model.encode(chunk)
            if fn is model.loss_fn or fn == model.loss_fn:   # the encoder's own loss: reuse its values
                per = enc.loss
            else:
                with torch.no_grad():
                    per = fn(model.decoder(enc.z), chunk)
        else:
            with torch.no_grad():
                per = fn(model(chunk), chunk)
        total += float(per.sum())
        n += chunk.shape[0]
    return total / n
