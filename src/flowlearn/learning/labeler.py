r"""A deep linearized assignment flow for labelled image sets, trained on the engine.

:class:`LabelerModel`: learnable per-pixel features (two small convolutions on the image), a learnable
data term (:class:`~flowlearn.learning.deep.PrototypeDistances` on the features) and ``layers`` re-linearized
flows (:class:`~flowlearn.learning.deep.DeepLinearizedFlow`), each with its own
:class:`~flowlearn.learning.deep.ConvPatchPredictor` that sees the features and the current assignment.
The stencil (3x3) follows the image size, so a model trained on random crops labels full images.

:class:`LabelerTrainer` runs :func:`flowlearn.engine.run_steps`: every step draws ``batch`` random crops
with random flips from the training images with an explicit ``torch.Generator`` (saved in the checkpoint),
minimises the KL (3.4) of the final assignment with Adam, and every ``eval_every`` steps labels the full
validation images; the parameters with the lowest validation pixel error are kept (model selection).
The checkpoint identity is the config plus a fingerprint of the data and the split.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .._checks import UserInputError, check_int, check_positive, check_seed
from ..engine import (
    CheckpointPolicy,
    RunResult,
    all_reduce_gradients,
    all_reduce_sum,
    fingerprint,
    load_module_state,
    run_steps,
    world,
)
from ..graphs import GridWeights
from .deep import (
    ConvPatchPredictor,
    DeepLinearizedFlow,
    PrototypeDistances,
    assignment_nll,
)
from .layer import LowRank

__all__ = ["LabelerConfig", "LabelerModel", "LabelerResult", "LabelerTrainer", "prepare_images"]


@dataclass(frozen=True)
class LabelerConfig:
    """Hyperparameters of :class:`LabelerTrainer` (the ``train-labeler`` flags are generated from them).

    Attributes
    ----------
    crop : int
        Side of the random square training crops (full images are used for evaluation).
    batch : int
        Crops per step.
    layers : int
        Number K of linearized flow layers.
    features : int
        Channels of the learned per-pixel features.
    hidden : int
        Hidden channels of each layer's patch predictor.
    lr : float
        Adam step size.
    iterations : int
        Training steps.
    rho : float
        Scale of the data term.
    T : float
        Integration time of each layer.
    m : int
        Krylov dimension of the closed-form backward.
    rank : int
        Rank of the low-rank gradient.
    eval_every : int
        Steps between evaluations on the validation images (model selection).
    seed : int
        Seed of the initialisation and of the crops.
    checkpoint_every : int
        Steps between checkpoints.
    checkpoint_seconds : float
        Also checkpoint after this many seconds (0: never by time).
    """

    crop: int = 64
    batch: int = 2
    layers: int = 3
    features: int = 8
    hidden: int = 16
    lr: float = 0.01
    iterations: int = 200
    rho: float = 1.0
    T: float = 1.0
    m: int = 10
    rank: int = 1
    eval_every: int = 25
    seed: int = 0
    checkpoint_every: int = 25
    checkpoint_seconds: float = 30.0

    def __post_init__(self):
        for name in ("crop", "batch", "layers", "features", "hidden", "iterations", "m", "rank", "eval_every",
                     "checkpoint_every"):
            check_int(name, getattr(self, name), minimum=0 if name == "iterations" else 2 if name == "crop" else 1)
        for name in ("lr", "rho", "T"):
            check_positive(name, getattr(self, name))
        check_positive("checkpoint_seconds", self.checkpoint_seconds, strict=False)
        check_seed("seed", self.seed)


def prepare_images(images, labels=None) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """``(images (N, H, W, C) float32, labels (N, H, W) int64, scale)``: uint8 images are divided by 255
    (``scale = 255``), float images are kept (``scale = 1``); one-line errors for bad arrays."""
    a = np.asarray(images)
    if a.ndim not in (3, 4) or a.size == 0 or not (a.dtype == np.uint8 or np.issubdtype(a.dtype, np.floating)):
        raise UserInputError(f"images must be a non-empty uint8 or float array (N, H, W[, C]), got dtype {a.dtype} "
                             f"and shape {a.shape}")
    scale = 255.0 if a.dtype == np.uint8 else 1.0
    x = torch.as_tensor(a.astype(np.float32) / scale)
    x = x[..., None] if x.ndim == 3 else x
    if not bool(torch.isfinite(x).all()):
        raise UserInputError("images must be finite (found NaN or inf)")
    if labels is None:
        return x, None, scale
    lab = np.asarray(labels)
    if lab.shape != a.shape[:3] or not np.issubdtype(lab.dtype, np.integer):
        raise UserInputError(f"labels must be an int array of shape {a.shape[:3]} (N, H, W), got dtype {lab.dtype} "
                             f"and shape {lab.shape}")
    if lab.min() < 0:
        raise UserInputError(f"labels must be >= 0, got minimum {lab.min()}")
    return x, torch.as_tensor(lab.astype(np.int64)), scale


class LabelerModel(nn.Module):
    """Features -> data term -> K linearized flow layers; ``model(image (H, W, C))`` -> ``DeepFlowOutput``."""

    def __init__(self, config: LabelerConfig, channels: int, num_labels: int):
        super().__init__()
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)  # the same initial values whatever the default dtype
        try:
            self._build(config, channels, num_labels)
        finally:
            torch.set_default_dtype(old)

    def _build(self, config: LabelerConfig, channels: int, num_labels: int) -> None:
        self.config, self.channels = config, check_int("channels", channels, minimum=1)
        self.num_labels = check_int("num_labels", num_labels, minimum=2)
        F = config.features
        self.feature_net = nn.Sequential(nn.Conv2d(channels, F, 5, padding=2, padding_mode="replicate"), nn.Tanh(),
                                         nn.Conv2d(F, F, 3, padding=1, padding_mode="replicate"), nn.Tanh())
        g = torch.Generator().manual_seed(config.seed + 1)
        self.distances = PrototypeDistances(torch.randn(num_labels, F + channels, generator=g))
        self.predictors = nn.ModuleList(ConvPatchPredictor(F + channels + num_labels, 9, hidden=config.hidden)
                                        for _ in range(config.layers))
        self._flows: dict = {}

    def features(self, image: torch.Tensor) -> torch.Tensor:
        f = self.feature_net(image.permute(2, 0, 1).unsqueeze(0))[0].permute(1, 2, 0)
        return torch.cat([image, f], dim=-1)

    def flow(self, height: int, width: int) -> DeepLinearizedFlow:
        """The K-layer flow on a ``height x width`` grid (sharing this model's modules)."""
        if (height, width) not in self._flows:
            c = self.config
            self._flows[(height, width)] = DeepLinearizedFlow(
                GridWeights(height, width, 3, dtype=torch.float32), list(self.predictors), rho=c.rho, T=c.T,
                method=LowRank(m=c.m, rank=c.rank), feed_assignment=True, distances=self.distances)
        return self._flows[(height, width)]

    def forward(self, image: torch.Tensor):
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[-1] != self.channels:
            raise UserInputError(f"image must be a tensor (H, W, {self.channels}), got "
                                 f"{tuple(getattr(image, 'shape', ()))}")
        H, W, _ = image.shape
        return self.flow(H, W)(self.features(image.to(torch.float32)))

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Labels ``(H, W)`` of a full image (argmax of the final assignment)."""
        with torch.no_grad():
            return self(image).log_assignment.argmax(-1).reshape(image.shape[:2])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


@dataclass(kw_only=True)
class LabelerResult(RunResult):
    """The engine's result plus ``best`` (iteration and validation error of the kept parameters)."""

    best: dict = field(default_factory=dict)


def pixel_error(model: LabelerModel, images, labels) -> float:
    """Mean pixel error (percent) of ``model`` over full images."""
    errs = [100.0 * float((model.predict(x) != y).double().mean()) for x, y in zip(images, labels)]
    return float(np.mean(errs))


class _State:
    def __init__(self, model, opt, gen, best):
        self.model, self.opt, self.gen, self.best = model, opt, gen, best

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "generator": self.gen.get_state(),
                "best": copy.deepcopy(self.best)}

    def load_state_dict(self, state: dict) -> None:
        load_module_state(self.model, state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"])
        self.best.clear()
        self.best.update(state["best"])


class LabelerTrainer:
    """Train a :class:`LabelerModel` on random crops of labelled images (see the module docstring)."""

    def __init__(self, config: LabelerConfig = LabelerConfig(), show_progress: bool = True):
        if not isinstance(config, LabelerConfig):
            raise UserInputError(f"config must be a LabelerConfig, got {type(config).__name__}")
        self.config, self.show_progress = config, bool(show_progress)

    def identity(self, images, labels, train, validation, extra=()) -> dict:
        c = {k: v for k, v in asdict(self.config).items()
             if k not in ("iterations", "checkpoint_every", "checkpoint_seconds")}
        return {"trainer": "LabelerTrainer", "config": c,
                "data": fingerprint(images, labels, list(train), list(validation), *extra)}

    def build(self, images, labels, train=None) -> LabelerModel:
        """A fresh model; its data term starts as pixel-wise rounding to the class means of ``images[train]``
        (prototype entries of the image channels = class means, of the learned features = 0)."""
        torch.manual_seed(self.config.seed)
        J, C = int(labels.max()) + 1, images.shape[-1]
        model = LabelerModel(self.config, C, J)
        x, y = images[train] if train else images, labels[train] if train else labels
        with torch.no_grad():
            model.distances.prototypes.zero_()
            for j in range(J):
                if bool((y == j).any()):
                    model.distances.prototypes[j, :C] = x[y == j].mean(0)
        return model

    def _crop(self, images, labels, train, gen):
        c = self.config.crop
        i = train[int(torch.randint(len(train), (1,), generator=gen))]
        H, W = images.shape[1:3]
        y0 = int(torch.randint(H - c + 1, (1,), generator=gen))
        x0 = int(torch.randint(W - c + 1, (1,), generator=gen))
        x, y = images[i, y0:y0 + c, x0:x0 + c], labels[i, y0:y0 + c, x0:x0 + c]
        flips = torch.randint(2, (2,), generator=gen)
        for axis, f in enumerate(flips):
            if int(f):
                x, y = x.flip(axis), y.flip(axis)
        return x.contiguous(), y.contiguous()

    def fit(self, images: torch.Tensor, labels: torch.Tensor, train, validation=(), *, model=None,
            checkpoint=None, resume: bool = True, stop_after=None, callback=None) -> tuple[LabelerModel, LabelerResult]:
        """Train on ``images[train]`` (``(N, H, W, C)`` float, labels ``(N, H, W)``), select on ``validation``;
        returns the model holding the selected parameters and the result.  ``validation`` may also be a pair
        ``(images, labels)`` of other (e.g. smaller) images."""
        cfg, train = self.config, list(train)
        if isinstance(validation, tuple) and len(validation) == 2 and isinstance(validation[0], torch.Tensor):
            val_images, val_labels = validation
            validation = list(range(len(val_images)))
        else:
            validation = list(validation)
            val_images, val_labels = images[validation], labels[validation]
        if not train:
            raise UserInputError("train must name at least one image")
        if cfg.crop > min(images.shape[1:3]):
            raise UserInputError(f"crop must be at most the image size {tuple(images.shape[1:3])}, got {cfg.crop}")
        model = self.build(images, labels, train) if model is None else model
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(cfg.seed)
        best: dict = {"iteration": -1, "validation_error": float("inf"), "state": None}

        world_size, rank = world()

        def step(it: int) -> dict:
            opt.zero_grad()
            total = torch.zeros(1, dtype=torch.float64)
            for k in range(cfg.batch):  # every rank draws every crop; under torchrun rank r trains crops r::world
                x, y = self._crop(images, labels, train, gen)
                if k % world_size != rank:
                    continue
                loss = assignment_nll(model(x), y) / cfg.batch
                loss.backward()
                total += float(loss.detach())
            all_reduce_gradients(model.parameters())
            opt.step()
            record = {"loss": float(all_reduce_sum(total)), "validation_error": None}
            if validation and ((it + 1) % cfg.eval_every == 0 or it + 1 == cfg.iterations):
                err = pixel_error(model, val_images, val_labels)
                record["validation_error"] = err
                if err < best["validation_error"]:
                    best.update(iteration=it, validation_error=err,
                                state={k: v.clone() for k, v in model.state_dict().items()})
            return record

        run = run_steps(step, iterations=cfg.iterations, state=_State(model, opt, gen, best),
                        identity=self.identity(images, labels, train, validation, (val_images, val_labels)),
                        checkpoint=CheckpointPolicy(checkpoint, cfg.checkpoint_every, cfg.checkpoint_seconds, resume),
                        desc="labeler", show_progress=None if self.show_progress else False,
                        postfix=("loss", "validation_error"), stop_after=stop_after, callback=callback)
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        info = {k: best[k] for k in ("iteration", "validation_error")}
        return model, LabelerResult(status=run.status, history=run.history, stats=run.stats, best=info)


def load_labeler(path, *, what: str = "--model file") -> tuple[LabelerModel, dict]:
    """A :class:`LabelerModel` and its metadata from a ``model.pt`` written by ``train-labeler``."""
    from ..engine import load_weights

    state = load_weights(path, keys=("state", "config", "channels", "num_labels", "input_scale", "value_range"),
                         what=what)
    try:
        config = LabelerConfig(**state["config"])
    except TypeError as exc:
        raise UserInputError(f"{what} {str(path)!r} has an unknown config ({exc})") from None
    model = LabelerModel(config, int(state["channels"]), int(state["num_labels"]))
    load_module_state(model, state["state"], what=what)
    return model.eval(), {k: v for k, v in state.items() if k != "state"}
