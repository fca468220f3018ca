"""The result object shared by all labeling flows."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._checks import UserInputError
from ..geometry import entropy

__all__ = ["LabelingResult", "check_weights_match"]


@dataclass
class LabelingResult:
    """Outcome of a labeling flow.

    Attributes
    ----------
    assignment : tensor ``(I, J)``
        Final assignment matrix :math:`W` (rows on the simplex).
    labels : tensor ``(I,)`` long
        Rounded labeling, ``argmax`` of each row.
    tangent : tensor ``(I, J)``
        Tangent vector :math:`V` with :math:`W = \\mathrm{softmax}(JV)`.
    time : float
        Integration time reached.
    steps : int
        Steps (or Krylov sub-steps / intervals) taken.
    status : str
        ``"success"``/``"terminated"`` (converged), ``"max_steps"``, ``"nonfinite"``, ...
    mean_entropy : float
        Mean row entropy of ``assignment`` (0 for an integral labeling).
    stats : dict
        Work counters of the solver.
    """

    assignment: torch.Tensor
    labels: torch.Tensor
    tangent: torch.Tensor
    time: float
    steps: int
    status: str
    mean_entropy: float
    stats: dict = field(default_factory=dict)

    @classmethod
    def from_assignment(cls, W, *, tangent, time, steps, status, stats=None) -> "LabelingResult":
        return cls(assignment=W, labels=W.argmax(-1), tangent=tangent, time=float(time), steps=int(steps),
                   status=str(status), mean_entropy=float(entropy(W).mean()), stats=dict(stats or {}))

    def label_image(self, height: int, width: int) -> torch.Tensor:
        """Labels reshaped to an ``(height, width)`` image."""
        if height * width != self.labels.numel():
            raise UserInputError(f"height*width must equal {self.labels.numel()}, got {height}x{width}")
        return self.labels.reshape(height, width)


def check_weights_match(weights, distances) -> None:
    """Raise ``ValueError`` if ``distances`` (shaped) has not one row per node of ``weights``."""
    rows = distances.shape[0] if hasattr(distances, "shape") and len(distances.shape) else None
    if rows is not None and rows != weights.num_nodes:
        raise UserInputError(
            f"distances must have one row per node of the weights ({weights.num_nodes}), "
            f"got shape {tuple(distances.shape)}"
        )
