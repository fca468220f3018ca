"""Hyperparameters of the deep linearized flow for labelled image sets (:mod:`flowlearn.learning.labeler`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._checks import UserInputError, check_choice, check_int, check_positive, check_seed
from ..engine import BOOKKEEPING, EXTENDABLE

DATA_TERMS = ("classifier", "prototypes")

__all__ = ["DATA_TERMS", "LabelerConfig"]


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
    filter_bank : bool
        Feed the fixed multi-scale filter features (GaussianFeatureBank at scales 1, 2, ..., 2^(scales-1),
        standardised on the training images) instead of the raw image, followed by a learned 1x1 layer to
        ``features`` channels; False: two learned convolutions on the image.
    scales : int
        Number of scales of the filter bank.
    data_term : {"classifier", "prototypes"}
        classifier: -log p of a small MLP on the inputs (ClassifierDistances); prototypes: squared distances
        of the learned features to learned class prototypes (PrototypeDistances).
    pretrain_steps : int
        The first steps train the data term alone (pixel-wise KL of softmax(-D), no flow; with the filter
        bank on 8192 random pixels of all training images, else on the crops), so that the flow steps are
        spent on the spatial part.
    final_lr_fraction : float
        The step size decays from lr to lr * final_lr_fraction on a cosine over the iterations.
    class_balance : float
        Class weights of the loss: label j weighs (frequency of j in the training labels)^(-class_balance);
        0 is the plain KL, 1 weighs every class equally (thin structures such as membranes count more).
    ignore_label : int or None
        Label value of unlabelled pixels (sparse labels, e.g. scribbles): they count in no loss, class
        weight or validation error, and are never sampled by the warm-up.  ``None``: every pixel is labelled.
    """

    crop: int = 128
    batch: int = 2
    layers: int = 3
    features: int = 8
    hidden: int = 16
    lr: float = 0.01
    iterations: int = field(default=3000, metadata=EXTENDABLE)
    rho: float = 1.0
    T: float = 1.0
    m: int = 10
    rank: int = 1
    eval_every: int = 200
    seed: int = 0
    checkpoint_every: int = field(default=25, metadata=BOOKKEEPING)
    checkpoint_seconds: float = field(default=30.0, metadata=BOOKKEEPING)
    filter_bank: bool = True
    scales: int = 5
    data_term: str = "classifier"
    pretrain_steps: int = 1000
    final_lr_fraction: float = 0.1
    class_balance: float = 0.5
    ignore_label: int | None = None

    def __post_init__(self):
        for name in ("crop", "batch", "layers", "features", "hidden", "iterations", "m", "rank", "eval_every",
                     "checkpoint_every", "scales", "pretrain_steps"):
            minimum = 0 if name in ("iterations", "pretrain_steps") else 2 if name == "crop" else 1
            check_int(name, getattr(self, name), minimum=minimum)
        for name in ("lr", "rho", "T"):
            check_positive(name, getattr(self, name))
        check_positive("checkpoint_seconds", self.checkpoint_seconds, strict=False)
        check_seed("seed", self.seed)
        check_positive("final_lr_fraction", self.final_lr_fraction)
        check_positive("class_balance", self.class_balance, strict=False)
        if self.ignore_label is not None:
            check_int("ignore_label", self.ignore_label, minimum=0)
        if self.final_lr_fraction > 1:
            raise UserInputError(f"final_lr_fraction must be in (0, 1], got {self.final_lr_fraction!r}")
        check_choice("data_term", self.data_term, DATA_TERMS)
        if not isinstance(self.filter_bank, bool):
            raise UserInputError(f"filter_bank must be True or False, got {self.filter_bank!r}")
