"""The result object shared by all labeling flows."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._checks import ComputationError, UserInputError
from ..geometry import entropy
from ..status import Status

__all__ = ["LabelingResult"]


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
    status : Status
        ``SUCCESS``/``TERMINATED`` (converged), ``MAX_STEPS``, ``MAX_SUBSTEPS``, ``NONFINITE``, ``UNDECIDED``;
        ``status.ok`` says whether the labeling may be used, ``status.message`` why not.
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
    status: Status
    mean_entropy: float
    stats: dict = field(default_factory=dict)

    @classmethod
    def from_assignment(cls, W, *, tangent, time, steps, status, stats=None) -> "LabelingResult":
        """The result of a flow's final assignment ``W``; the solver's status becomes ``NONFINITE``
        when ``W`` has NaN/inf entries and ``UNDECIDED`` when most rows are uniform to
        ``UNDECIDED_GAP`` (no label was chosen), so that no failure passes as a labeling."""
        status = Status(status)
        stats = dict(stats or {})
        if not bool(torch.isfinite(W).all()):
            status = Status.NONFINITE
        elif W.shape[-1] > 1:
            top = W.topk(2, dim=-1).values
            undecided = float(((top[:, 0] - top[:, 1]) < UNDECIDED_GAP).double().mean())
            stats["undecided_fraction"] = undecided
            if undecided > 0.5:  # the more telling cause, whatever the solver says
                status = Status.UNDECIDED
        return cls(assignment=W, labels=W.argmax(-1), tangent=tangent, time=float(time), steps=int(steps),
                   status=status, mean_entropy=float(entropy(W).mean()), stats=stats)

    def raise_for_status(self, *, options: str = "") -> "LabelingResult":
        """``self`` when :attr:`status` is ``ok``, else :class:`~flowlearn._checks.ComputationError`
        naming the cause (``options``: what the caller can change, e.g. ``"--T, --rho"``)."""
        if not self.status.ok:
            extra = f" (options: {options})" if options else ""
            raise ComputationError(f"the flow did not produce a labeling: status {self.status.value}: "
                                   f"{self.status.message}{extra}")
        return self

    def label_image(self, height: int, width: int) -> torch.Tensor:
        """Labels reshaped to an ``(height, width)`` image."""
        if height * width != self.labels.numel():
            raise UserInputError(f"height*width must equal {self.labels.numel()}, got {height}x{width}")
        return self.labels.reshape(height, width)


#: a row whose two largest assignment probabilities differ by less than this is undecided
UNDECIDED_GAP = 1e-9
