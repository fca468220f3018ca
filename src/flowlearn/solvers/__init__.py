"""ODE machinery: one ``integrate`` entry point, Runge--Kutta steps, Krylov phi-functions, and the
flow strategies (``AMD``, ``BB``, ``FixedGrid``, ``Nesterov``).

Knows nothing of the applications.
"""

from .amd import AMD
from .base import integrate
from .bb import BB
from .fixed_grid import FixedGrid, Nesterov
from .krylov import krylov_phi
from .linear_ode import ExponentialIntegrator, FixedStepIntegrator
from .runge_kutta import RK4, Euler, Heun

__all__ = [
    "AMD",
    "BB",
    "RK4",
    "Euler",
    "ExponentialIntegrator",
    "FixedGrid",
    "FixedStepIntegrator",
    "Heun",
    "Nesterov",
    "integrate",
    "krylov_phi",
]
