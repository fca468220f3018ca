"""Typed results of :class:`~flowlearn.encoding.encoder.GradientFlowEncoder`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch

__all__ = ["EncodeResult", "TrainingLoss"]


@dataclass
class EncodeResult:
    """Codes and per-sample statistics of one encoding.

    Attributes
    ----------
    z : tensor (B, latent_dim), detached
    loss : tensor (B,)
        :math:`l(y_b, D(z_b))` at the returned code.
    steps : long tensor (B,)
        Accepted solver steps.
    decoder_evals : long tensor (B,)
        Decoder forward passes spent on the sample (each gradient evaluation counts one forward
        and one backward pass; backtracking trials one forward pass).
    time : tensor (B,)
        Integration time reached (AMD/BB: the sample's own :math:`\\tau'`, the sum of its steps).
    status : list of str, length B
        AMD/BB: the :class:`~flowlearn.solvers.amd.AMDStatus` value; fixed grids: ``"success"``,
        ``"nonfinite"``, or ``"interrupted"`` (another row became non-finite).
    stats : dict
        Solver name and batch totals.
    """

    z: torch.Tensor
    loss: torch.Tensor
    steps: torch.Tensor
    decoder_evals: torch.Tensor
    time: torch.Tensor
    status: List[str]
    stats: dict = field(default_factory=dict)


@dataclass
class TrainingLoss:
    """Decoder training objective of one batch.

    Attributes
    ----------
    loss : scalar tensor
        :math:`\\frac1B\\sum_b l(y_b, D(z_b^*))`; ``loss.backward()`` gives the gradient of the
        chosen ``adjoint``.
    per_sample : tensor (B,), detached
    encoding : EncodeResult
    """

    loss: torch.Tensor
    per_sample: torch.Tensor
    encoding: EncodeResult
