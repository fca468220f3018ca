r"""Per-sample reconstruction losses ``loss(recon, target) -> (B,)``, each a mean over the entries of a sample.

A user loss is any callable with the same signature that returns one finite value per row and treats rows
independently (row ``b`` of :math:`\nabla_z \sum_b l_b` must be :math:`\nabla_{z_b} l_b`).
"""

from __future__ import annotations

import abc
import math
from typing import Callable

import torch
import torch.nn.functional as F

from .._checks import UserInputError, UserTypeError, check_positive
from ..engine import spec
from ..engine.identity import record_hparams

__all__ = ["BCE", "LOSS_NAMES", "MSE", "GaussianNLL", "Masked", "ReconstructionLoss", "loss_name", "resolve_loss"]


def _flat(recon: torch.Tensor, target: torch.Tensor):
    if recon.shape[0] != target.shape[0] or recon[0].numel() != target[0].numel():
        raise UserInputError(f"recon and target must hold the same samples, got shapes {tuple(recon.shape)} "
                             f"and {tuple(target.shape)}")
    x = recon.reshape(recon.shape[0], -1)
    return x, target.reshape(target.shape[0], -1).to(x.dtype)


class ReconstructionLoss(abc.ABC):
    """Base class: ``__call__(recon, target) -> (B,)`` is the mean of :meth:`per_entry` over each row;
    ``needs_unit_interval``: the targets must lie in [0, 1] (checked by the encoder and the trainer)."""

    name = "custom"
    needs_unit_interval = False

    @abc.abstractmethod
    def per_entry(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of every entry of the flattened ``(B, P)`` reconstructions ``x`` and targets ``y``."""

    def __call__(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = _flat(recon, target)
        return self.per_entry(x, y).mean(dim=1)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and spec(self) == spec(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BCE(ReconstructionLoss):
    r""":math:`l = -\frac1P\sum_p y_p\log x_p + (1-y_p)\log(1-x_p)`; ``recon`` in (0, 1), ``target`` in [0, 1]
    (logs clamped at -100 as in torch)."""

    name = "bce"
    needs_unit_interval = True

    def per_entry(self, x, y):
        return F.binary_cross_entropy(x, y, reduction="none")


class MSE(ReconstructionLoss):
    r""":math:`l = \frac1P\sum_p (x_p - y_p)^2`."""

    name = "mse"

    def per_entry(self, x, y):
        return (x - y) ** 2


class GaussianNLL(ReconstructionLoss):
    r"""Gaussian negative log-likelihood per entry with a fixed standard deviation ``sigma``:
    :math:`\frac{(x_p - y_p)^2}{2\sigma^2} + \log\sigma + \frac12\log 2\pi`."""

    name = "gaussian"

    def __init__(self, sigma: float = 0.1):
        record_hparams(self, {"sigma": check_positive("sigma", sigma)})
        self.sigma = self.hparams["sigma"]

    def per_entry(self, x, y):
        return (x - y) ** 2 / (2 * self.sigma ** 2) + math.log(self.sigma) + 0.5 * math.log(2 * math.pi)

    def __repr__(self) -> str:
        return f"GaussianNLL(sigma={self.sigma})"


class Masked(ReconstructionLoss):
    """``base`` (a :class:`ReconstructionLoss` or its name) averaged over the entries where ``mask`` is nonzero;
    ``mask`` is one for all samples (shape of one sample, or ``(P,)``) or one per sample ``(B, P)``, and every
    row must observe at least one entry."""

    def __init__(self, base, mask: torch.Tensor):
        base = resolve_loss(base)
        if not isinstance(base, ReconstructionLoss):
            raise UserTypeError("Masked needs an element-wise flowlearn loss (BCE, MSE, GaussianNLL or its name), "
                                f"got {type(base).__name__}")
        if not isinstance(mask, torch.Tensor):
            raise UserTypeError(f"mask must be a tensor, got {type(mask).__name__}")
        self.base, self.mask = base, mask
        record_hparams(self, {"base": base, "mask": mask})
        self.name = f"masked-{base.name}"
        self.needs_unit_interval = base.needs_unit_interval

    def per_entry(self, x, y):
        return self.base.per_entry(x, y)

    def __call__(self, recon, target):
        x, y = _flat(recon, target)
        m = self.mask.to(device=x.device, dtype=x.dtype)
        m = m.reshape(1, -1) if m.numel() == x.shape[1] else m.reshape(x.shape[0], -1)
        if m.shape[1] != x.shape[1]:
            raise UserInputError(f"mask must have {x.shape[1]} entries per sample, got shape {tuple(self.mask.shape)}")
        count = m.sum(dim=1)
        if bool((count <= 0).any()):
            raise UserInputError("mask must observe at least one entry of every sample")
        return (self.per_entry(x, y) * m).sum(dim=1) / count

    def __repr__(self) -> str:
        return f"Masked({self.base!r}, mask of shape {tuple(self.mask.shape)})"


_NAMED = {"bce": BCE, "mse": MSE, "gaussian": GaussianNLL}
LOSS_NAMES = tuple(_NAMED)


def resolve_loss(loss) -> Callable:
    """A loss callable from a name (``"bce"``, ``"mse"``, ``"gaussian"``) or a callable (returned as is)."""
    if isinstance(loss, str):
        if loss not in _NAMED:
            raise UserInputError(f"loss must be one of {LOSS_NAMES} or a callable loss(recon, target) -> (B,), "
                                 f"got {loss!r}")
        return _NAMED[loss]()
    if not callable(loss):
        raise UserTypeError(f"loss must be a name or a callable loss(recon, target) -> (B,), got {type(loss).__name__}")
    return loss


def loss_name(loss) -> str:
    """A short name for reports: the string, the flowlearn loss's ``name``, or the callable's name."""
    if isinstance(loss, str):
        return loss
    return getattr(loss, "name", None) or getattr(loss, "__name__", type(loss).__name__)
