"""Convenience entry point: label an image with prototypes in one call."""

from __future__ import annotations

import enum

import torch

from .._checks import UserInputError, as_tensor, check_choice, check_finite, check_int, check_ndim, check_positive
from ..graphs import GridWeights
from ..solvers import ExponentialIntegrator
from .data_term import distance_matrix
from .flow import AssignmentFlow, LabelingResult, LinearizedAssignmentFlow

__all__ = ["FlowKind", "check_value_ranges", "label"]


class FlowKind(str, enum.Enum):
    """Which assignment flow :func:`label` runs."""

    FULL = "full"
    LINEARIZED = "linearized"

    @classmethod
    def parse(cls, value) -> "FlowKind":
        check_choice("flow", value, [k.value for k in cls])
        return cls(value)


def label(image, prototypes, *, flow: str = "full", neighbourhood: int = 3, rho: float = 1.0,
          step_size: float = 1.0, T: float = 10.0, krylov_dim: int = 10, patches=None,
          entropy_tol: float = 1e-3, max_steps: int = 1000, throw: bool = True) -> LabelingResult:
    r"""Label an image by an assignment flow with uniform (or given) weight patches.

    Parameters
    ----------
    image : array ``(H, W)`` or ``(H, W, C)``
        Pixel features; squared Euclidean distances to the prototypes form the data term.
    prototypes : array ``(J, C)``, in the image's value range (:func:`check_value_ranges`)
    flow : {"full", "linearized"}
        Full flow (geometric Euler, entropy termination) or the linearized flow
        :math:`V(T) = T\varphi(TA)B` by Krylov exponential integration.
    neighbourhood : odd int
        Size of the square neighbourhoods.
    rho : float > 0
        Scale of the data term :math:`\exp_W(-D/\rho)`.
    step_size, entropy_tol, max_steps : for the full flow.
    T, krylov_dim : for the linearized flow.
    patches : array ``(H*W, neighbourhood**2)``, optional
        Weight patches (e.g. learned); default uniform.
    throw : bool
        Raise :class:`~flowlearn._checks.ComputationError` when ``status.ok`` is false (not converged,
        non-finite, undecided) instead of returning the failed result.

    Returns
    -------
    LabelingResult
        ``labels`` has shape ``(H*W,)``; use ``result.label_image(H, W)``.
    """
    kind = FlowKind.parse(flow)
    x = as_tensor("image", image)
    check_ndim("image", x, (2, 3))
    if x.ndim == 2:
        x = x.unsqueeze(-1)
    if x.numel() == 0:
        raise UserInputError(f"image must be non-empty, got shape {tuple(x.shape)}")
    check_finite("image", x)
    neighbourhood = check_int("neighbourhood", neighbourhood, minimum=1, odd=True)
    rho = check_positive("rho", rho)
    H, W, _ = x.shape
    D = distance_matrix(x, prototypes)
    check_value_ranges(x, prototypes)
    if not bool(torch.isfinite(D).all()):
        raise UserInputError(f"the squared distances between image and prototypes overflow {x.dtype} (image values "
                             f"up to {float(x.abs().max()):.3g}); rescale the image and the prototypes")
    weights = GridWeights(H, W, neighbourhood, patches=patches, dtype=x.dtype, device=x.device)
    if kind is FlowKind.FULL:
        runner = AssignmentFlow(weights, rho=rho, step_size=step_size, entropy_tol=entropy_tol, max_steps=max_steps)
    else:
        m = check_int("krylov_dim", krylov_dim, minimum=1)
        runner = LinearizedAssignmentFlow(weights, rho=rho, T=T, integrator=ExponentialIntegrator(m=m))
    result = runner.run(D)
    if throw:
        result.raise_for_status(options="--T, --rho" if kind is FlowKind.LINEARIZED else "--rho, --step-size")
    return result


def check_value_ranges(image: torch.Tensor, prototypes) -> None:
    """Raise :class:`UserInputError` when the value intervals of image and prototypes overlap on less than
    5 % of the image's range (a uint8 image with prototypes in [0, 1] would give every pixel one label)."""
    p = as_tensor("prototypes", prototypes, dtype=image.dtype, device=image.device)
    check_finite("prototypes", p)
    lo, hi = float(image.min()), float(image.max())
    plo, phi = float(p.min()), float(p.max())
    span = hi - lo
    if 0 < span < float("inf") and min(hi, phi) - max(lo, plo) < 0.05 * span:
        raise UserInputError(f"prototypes lie in [{plo:.4g}, {phi:.4g}] but the image in [{lo:.4g}, {hi:.4g}]: "
                             f"give prototypes in the image's value range (e.g. scale a 0..255 image to [0, 1])")
