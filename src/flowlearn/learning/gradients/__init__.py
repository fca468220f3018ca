"""Gradient methods behind one interface, selectable by name.

>>> from flowlearn.learning import make_gradient_method
>>> make_gradient_method("lowrank", m=10, rank=1)
LowRankGradient(m=10, rank=1)
"""

from __future__ import annotations

import dataclasses

from ..._checks import UserInputError
from .autodiff import AutodiffEulerGradient, AutodiffExpintGradient
from .base import DataGradient, GradientMethod, GradientResult
from .closed_form import MAX_EXACT_SIZE, ExactGradient, LowRankGradient

__all__ = [
    "GRADIENT_METHODS",
    "AutodiffEulerGradient",
    "AutodiffExpintGradient",
    "DataGradient",
    "ExactGradient",
    "GradientMethod",
    "GradientResult",
    "LowRankGradient",
    "MAX_EXACT_SIZE",
    "make_gradient_method",
]

#: Registry: name -> class.
GRADIENT_METHODS: dict[str, type[GradientMethod]] = {
    cls.name: cls for cls in (ExactGradient, LowRankGradient, AutodiffEulerGradient, AutodiffExpintGradient)
}


def make_gradient_method(name: str, **options) -> GradientMethod:
    """Build the gradient method registered as ``name`` with its hyperparameters ``options``.

    Raises
    ------
    ValueError
        For an unknown name or an option the method does not have (listing the valid ones).
    """
    if name not in GRADIENT_METHODS:
        raise UserInputError(f"gradient method must be one of {sorted(GRADIENT_METHODS)}, got {name!r}")
    cls = GRADIENT_METHODS[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserInputError(f"gradient method {name!r} has no option(s) {unknown}; valid options: {valid}")
    return cls(**options)
