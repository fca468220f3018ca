"""``TrainConfig``: the frozen hyperparameters of one GFE / AE training run (CLI flags are generated from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .._checks import check_choice, check_int, check_positive, check_seed
from ..engine import BOOKKEEPING
from .adjoint import ADJOINTS
from .encoder import SOLVERS, solver_from_name
from .schedule import SAMPLINGS

__all__ = ["MODELS", "OPTIMIZERS", "TrainConfig"]

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
        """The solver object this config stands for (:func:`~flowlearn.encoding.encoder.solver_from_name`):
        ``amd`` (default ``AMD()``) for ``solver="amd"``, ``bb`` (default ``BB()``), or a ``FixedGrid``/``Nesterov``
        built from ``t1``, ``steps`` and ``grid``."""
        if self.solver in ("amd", "bb"):
            return solver_from_name(self.solver, amd=amd, bb=bb)
        return solver_from_name(self.solver, t1=self.t1, steps=self.steps, grid=self.grid)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-4 if self.optimizer == "rmsprop" else 1e-3)
