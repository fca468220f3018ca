"""Explicit Runge--Kutta methods defined by their Butcher tableau.

One class does the stepping; each named method only supplies its tableau.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import UserInputError
from .base import Solver

__all__ = ["RK4", "Euler", "ExplicitRungeKutta", "Heun"]


class ExplicitRungeKutta(Solver):
    r"""Explicit Runge--Kutta step with Butcher tableau ``(a, b, c)``.

    .. math:: k_s = f\big(t + c_s h,\; y + h\sum_{r<s} a_{sr} k_r\big),\qquad
              y_{n+1} = y_n + h\sum_s b_s k_s .

    Parameters
    ----------
    a : lower-triangular list of lists (stage coefficients)
    b : weights, length ``s``
    c : nodes, length ``s``
    order : classical order
    """

    def __init__(self, a: Sequence[Sequence[float]], b: Sequence[float], c: Sequence[float], order: int):
        s = len(b)
        if len(c) != s or len(a) != s or any(len(row) != i for i, row in enumerate(a)):
            raise UserInputError(
                f"Butcher tableau must have len(b) == len(c) == len(a) = s and row i of a of length i, "
                f"got s={s}, len(c)={len(c)}, row lengths {[len(r) for r in a]}"
            )
        self.a = [list(map(float, row)) for row in a]
        self.b = list(map(float, b))
        self.c = list(map(float, c))
        self.order = int(order)
        self.stages = s

    def step(self, f, t, y, h):
        ks: list[torch.Tensor] = []
        for s in range(self.stages):
            ys = y
            for coeff, k in zip(self.a[s], ks):
                if coeff != 0.0:
                    ys = ys + (h * coeff) * k
            ks.append(f(t + self.c[s] * h, ys))
        out = y
        for coeff, k in zip(self.b, ks):
            if coeff != 0.0:
                out = out + (h * coeff) * k
        return out


class Euler(ExplicitRungeKutta):
    """Explicit Euler, order 1. On the tangent-space parametrisation of the
    assignment manifold this is the *geometric Euler* scheme."""

    def __init__(self):
        super().__init__(a=[[]], b=[1.0], c=[0.0], order=1)


class Heun(ExplicitRungeKutta):
    """Heun's method (explicit trapezoidal rule), order 2."""

    def __init__(self):
        super().__init__(a=[[], [1.0]], b=[0.5, 0.5], c=[0.0, 1.0], order=2)


class RK4(ExplicitRungeKutta):
    """The classical fourth-order Runge--Kutta method."""

    def __init__(self):
        super().__init__(
            a=[[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]],
            b=[1 / 6, 1 / 3, 1 / 3, 1 / 6],
            c=[0.0, 0.5, 0.5, 1.0],
            order=4,
        )
