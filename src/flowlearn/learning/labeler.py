r"""A deep linearized assignment flow for labelled image sets (:class:`LabelerModel`), trained on the engine.

:class:`LabelerTrainer` runs :func:`flowlearn.engine.run_steps`: the first ``pretrain_steps`` train the data term
alone; every later step draws ``batch`` random crops with random flips (an explicit ``torch.Generator``, saved in
the checkpoint) and minimises the (optionally class-weighted) KL (3.4) of the final assignment with Adam on a
cosine step size; every ``eval_every`` steps the full validation images are labelled and the parameters with the
lowest validation pixel error are kept.  The stencil follows the image size, so a model trained on crops labels
full images.  The checkpoint identity is the config plus a fingerprint of the data and the split.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._checks import UserInputError
from ..engine import CheckpointPolicy, RunResult, TrainState, run_identity, run_steps
from ..engine.checkpoint import load_module_state
from ..engine.distributed import all_reduce_gradients, all_reduce_sum, world
from ..engine.schedule import cosine_factor
from .deep import PrototypeDistances, assignment_nll
from .labeler_config import DATA_TERMS, LabelerConfig
from .labeler_model import LabelerModel

__all__ = ["DATA_TERMS", "LabelerConfig", "LabelerResult", "LabelerTrainer", "prepare_images"]


def prepare_images(images, labels=None) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """``(images (N, H, W, C) float32, labels (N, H, W) int64, scale)``: uint8 images are divided by 255
    (``scale = 255``), float images are kept (``scale = 1``)."""
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


@dataclass(kw_only=True)
class LabelerResult(RunResult):
    """The engine's result plus ``best`` (iteration and validation error of the kept parameters)."""

    best: dict = field(default_factory=dict)


def pixel_error(model: LabelerModel, images, labels, *, inputs=None) -> float:
    """Mean pixel error (percent) of ``model`` over full images (or their precomputed ``inputs``); pixels labelled
    :data:`UNLABELLED` do not count."""
    preds = map(model.predict_inputs, inputs) if inputs is not None else map(model.predict, images)
    return float(np.mean([100.0 * float((p != y)[y != UNLABELLED].double().mean()) for p, y in zip(preds, labels)]))


#: Internal label of unlabelled pixels (``LabelerConfig.ignore_label`` is mapped to it; ``nll_loss``'s default).
UNLABELLED = -100


def _unlabelled_to_internal(labels: torch.Tensor, ignore_label: int | None) -> torch.Tensor:
    return labels if ignore_label is None else labels.masked_fill(labels == ignore_label, UNLABELLED)


class LabelerTrainer:
    """Train a :class:`LabelerModel` on random crops of labelled images (see the module docstring)."""

    def __init__(self, config: LabelerConfig = LabelerConfig(), show_progress: bool = True):
        if not isinstance(config, LabelerConfig):
            raise UserInputError(f"config must be a LabelerConfig, got {type(config).__name__}")
        self.config, self.show_progress = config, bool(show_progress)

    def identity(self, images, labels, train, validation, extra=()) -> dict:
        """What a checkpoint must match: the config's non-bookkeeping fields and the data with its split."""
        return run_identity("LabelerTrainer", config=self.config,
                            inputs=(images, labels, list(train), list(validation), *extra))

    def build(self, images, labels, train=None) -> LabelerModel:
        """A fresh model.  With the filter bank, its standardisation comes from ``images[train]``; without it, a
        prototype data term starts as pixel-wise rounding to the class means of ``images[train]`` (prototype
        entries of the image channels = class means, of the learned features = 0)."""
        torch.manual_seed(self.config.seed)
        labels = _unlabelled_to_internal(labels, self.config.ignore_label)
        J, C = int(labels.max()) + 1, images.shape[-1]
        model = LabelerModel(self.config, C, J)
        x, y = images[train] if train else images, labels[train] if train else labels
        with torch.no_grad():
            if model.bank is not None:     # standardise the filter bank on the training images
                bank = torch.cat([model.bank(im.to(torch.float32)).reshape(-1, model.bank_mean.numel()) for im in x])
                model.bank_mean.copy_(bank.mean(0))
                model.bank_std.copy_(bank.std(0).clamp_min(1e-6))
            if isinstance(model.distances, PrototypeDistances):
                model.distances.prototypes.zero_()
                if model.bank is None:
                    for j in range(J):
                        if bool((y == j).any()):
                            model.distances.prototypes[j, :C] = x[y == j].mean(0)
        return model

    def class_weights(self, labels, train, num_labels: int) -> torch.Tensor | None:
        """``frequency_j ** (-class_balance)`` over ``labels[train]`` (absent labels weigh like the rarest
        present one), or None for the plain loss."""
        if self.config.class_balance == 0:
            return None
        y = labels[list(train)].reshape(-1)
        counts = torch.bincount(y[y != UNLABELLED], minlength=num_labels).to(torch.float64)
        freq = counts / counts.sum()
        freq = torch.where(counts > 0, freq, freq[counts > 0].min())
        w = freq ** (-self.config.class_balance)
        return (w / w.min()).to(torch.float32)

    def _pixels(self, inputs, labels, train, gen, labelled=None, count: int = 8192):
        """``count`` random labelled pixels ``(count, 1, C)`` of the training inputs and their labels ``(count,)``."""
        H, W = labels.shape[1:3]
        if labelled is not None:
            pick = labelled[torch.randint(len(labelled), (count,), generator=gen)]
            img, pos = pick // (H * W), pick % (H * W)
        else:
            img = torch.randint(len(train), (count,), generator=gen)
            pos = torch.randint(H * W, (count,), generator=gen)
        u = torch.cat([inputs[train[int(i)]].reshape(H * W, -1)[pos[img == i]] for i in range(len(train))])
        v = torch.cat([labels[train[int(i)]].reshape(-1)[pos[img == i]] for i in range(len(train))])
        return u.unsqueeze(1), v

    def _crop(self, inputs, labels, train, gen):
        """A random crop with random flips of a training image's inputs ``(H, W, C)`` and its labels."""
        c = self.config.crop
        i = train[int(torch.randint(len(train), (1,), generator=gen))]
        H, W = labels.shape[1:3]
        y0 = int(torch.randint(H - c + 1, (1,), generator=gen))
        x0 = int(torch.randint(W - c + 1, (1,), generator=gen))
        x, y = inputs[i][y0:y0 + c, x0:x0 + c], labels[i, y0:y0 + c, x0:x0 + c]
        for axis, f in enumerate(torch.randint(2, (2,), generator=gen)):
            if int(f):
                x, y = x.flip(axis), y.flip(axis)
        return x.contiguous(), y.contiguous()

    def fit(self, images: torch.Tensor, labels: torch.Tensor, train, validation=(), *, checkpoint=None,
            resume: bool = False, overwrite: bool = False, stop_after=None,
            callback=None) -> tuple[LabelerModel, LabelerResult]:
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
        raw_labels, raw_val = labels, val_labels
        labels = _unlabelled_to_internal(labels, cfg.ignore_label)
        val_labels = _unlabelled_to_internal(val_labels, cfg.ignore_label)
        if not bool((labels[train] != UNLABELLED).any()):
            raise UserInputError(f"the training labels have no labelled pixel (every pixel is ignore_label = "
                                 f"{cfg.ignore_label})")
        if cfg.crop > min(images.shape[1:3]):
            raise UserInputError(f"crop must be at most the image size {tuple(images.shape[1:3])}, got {cfg.crop}")
        model = self.build(images, labels, train)
        # the fixed inputs (filter bank) of the full images, once: crops of them match what a full image sees
        with torch.no_grad():
            train_inputs = {i: model.inputs(images[i]) for i in train}
            val_inputs = [model.inputs(v) for v in val_images]
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(cfg.seed)
        best: dict = {"iteration": -1, "validation_error": float("inf"), "state": None}
        weight = self.class_weights(labels, train, model.num_labels)
        flat = labels[train].reshape(-1)   # flat indices of the labelled training pixels (None: all are labelled)
        labelled = (flat != UNLABELLED).nonzero().squeeze(1) if bool((flat == UNLABELLED).any()) else None
        world_size, rank = world()

        def step(it: int) -> dict:
            for group in opt.param_groups:   # a function of the step only: resumed runs continue it exactly
                group["lr"] = cfg.lr * cosine_factor(it, cfg.iterations, cfg.final_lr_fraction)
            warmup = it < cfg.pretrain_steps
            opt.zero_grad()
            total = torch.zeros(1, dtype=torch.float64)
            loss = None
            if warmup and model.bank is not None:   # per-pixel data term: random pixels of all training images
                u, v = self._pixels(train_inputs, labels, train, gen, labelled)   # the same pixels on every rank
                norm = len(v) if weight is None else float(weight[v].sum())  # summed over ranks: the (weighted) mean
                u, v = u[rank::world_size], v[rank::world_size]
                loss = assignment_nll(-model.data_term(u.unsqueeze(1)), v.view(-1, 1, 1), weight,
                                      reduction="sum") / norm
            else:
                crops = [self._crop(train_inputs, labels, train, gen) for _ in range(cfg.batch)]  # every rank draws all
                mine = crops[rank::world_size]   # under torchrun rank r trains crops r::world, as one batch
                if mine:
                    x, y = torch.stack([c[0] for c in mine]), torch.stack([c[1] for c in mine])
                    every = torch.stack([c[1] for c in crops])     # the (weighted) mean over all ranks' crops
                    every = every[every != UNLABELLED]
                    norm = max(every.numel() if weight is None else float(weight[every].sum()), 1.0)
                    out = -model.data_term(x) if warmup else model.forward_inputs(x)
                    loss = assignment_nll(out, y, weight, reduction="sum", ignore_index=UNLABELLED) / norm
            if loss is not None:
                loss.backward()
                total += float(loss.detach())
            all_reduce_gradients(model.parameters())
            opt.step()
            record = {"loss": float(all_reduce_sum(total)), "validation_error": None}
            if validation and not warmup and ((it + 1) % cfg.eval_every == 0 or it + 1 == cfg.iterations):
                err = pixel_error(model, val_images, val_labels, inputs=val_inputs)
                record["validation_error"] = err
                if err < best["validation_error"]:
                    best.update(iteration=it, validation_error=err,
                                state={k: v.clone() for k, v in model.state_dict().items()})
            return record

        state = TrainState(model=model, optimizer=opt, generator=gen, best=best)
        run = run_steps(step, iterations=cfg.iterations, state=state,
                        identity=self.identity(images, raw_labels, train, validation, (val_images, raw_val)),
                        checkpoint=CheckpointPolicy(checkpoint, cfg.checkpoint_every, cfg.checkpoint_seconds, resume,
                                                    overwrite),
                        desc="labeler", show_progress=None if self.show_progress else False,
                        postfix=("loss", "validation_error"), stop_after=stop_after, callback=callback)
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        info = {k: best[k] for k in ("iteration", "validation_error")}
        return model, LabelerResult(status=run.status, history=run.history, stats=run.stats, best=info)


#: sane bounds of a model file's numbers, checked before anything is built from them
MODEL_BOUNDS = {"layers": 64, "features": 1024, "hidden": 1024, "scales": 16, "m": 200, "rank": 200,
                "channels": 64, "num_labels": 1024}


def save_model(path, model: LabelerModel, meta: dict) -> Path:
    """Write ``model`` and its metadata (``config``, ``input_scale``, ``value_range``, ``input_dtype``, ...) to
    ``path`` for :func:`load_model` (tensors and plain values only: read with ``weights_only=True``)."""
    from ..io import save_weights

    full = {"config": asdict(model.config), "channels": model.channels, "num_labels": model.num_labels, **meta}
    save_weights(path, {"state": model.state_dict(), **full})
    return Path(path)


def _check_bounds(meta: dict, path, what: str) -> None:
    numbers = {**meta.get("config", {}), "channels": meta.get("channels"), "num_labels": meta.get("num_labels")}
    for key, bound in MODEL_BOUNDS.items():
        value = numbers.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= bound):
            raise UserInputError(f"{what} {str(path)!r} has {key} = {value!r}, expected an integer in 1..{bound}")
    scale, vr = meta.get("input_scale"), meta.get("value_range")
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise UserInputError(f"{what} {str(path)!r} has input_scale = {scale!r}, expected a finite number > 0")
    if (not isinstance(vr, (list, tuple)) or len(vr) != 2 or not all(isinstance(v, (int, float)) for v in vr)
            or not all(math.isfinite(v) for v in vr) or vr[0] > vr[1]):
        raise UserInputError(f"{what} {str(path)!r} has value_range = {vr!r}, expected [low, high] finite numbers")


#: Models shipped inside the package (``flowlearn/models/``): name -> file; each has a model card ``NAME.md``.
SHIPPED_MODELS = {"isbi-membranes": "isbi-membranes.pt"}


def model_path(name_or_path) -> Path:
    """The file of a shipped model's name (:data:`SHIPPED_MODELS`), else ``name_or_path`` as a path."""
    if str(name_or_path) in SHIPPED_MODELS:
        from importlib.resources import files

        return Path(str(files("flowlearn") / "models" / SHIPPED_MODELS[str(name_or_path)]))
    return Path(name_or_path)


def load_model(path, *, what: str = "model file") -> tuple[LabelerModel, dict]:
    """A :class:`LabelerModel` and its metadata from a ``model.pt`` written by :func:`save_model` or a shipped
    model's name (:data:`SHIPPED_MODELS`); the numbers are checked against :data:`MODEL_BOUNDS` before anything
    is built, and missing or extra parameters are a one-line error."""
    from ..engine.checkpoint import load_weights

    path = model_path(path)
    state = load_weights(path, keys=("state", "config", "channels", "num_labels", "input_scale", "value_range"),
                         what=what)
    if not isinstance(state["config"], dict) or not isinstance(state["state"], dict):
        raise UserInputError(f"{what} {str(path)!r} is malformed (config and state must be dictionaries)")
    _check_bounds(state, path, what)
    try:   # files written before the filter bank existed hold the conv-feature, prototype model
        config = LabelerConfig(**{"filter_bank": False, "data_term": "prototypes", **state["config"]})
    except TypeError as exc:
        raise UserInputError(f"{what} {str(path)!r} has an unknown config ({exc})") from None
    model = LabelerModel(config, int(state["channels"]), int(state["num_labels"]))
    mine, theirs = set(model.state_dict()), set(state["state"])
    if mine != theirs:
        diff = sorted(mine ^ theirs)
        raise UserInputError(f"{what} {str(path)!r} does not match its config: parameters {diff[:3]} are "
                             f"{'missing' if diff[0] in mine else 'unexpected'}")
    load_module_state(model, state["state"], what=what)
    return model.eval(), {k: v for k, v in state.items() if k != "state"}
