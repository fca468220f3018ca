"""ODE machinery: one ``integrate`` entry point, Runge--Kutta steps, Krylov phi-functions, and the
flow strategies (``AMD``, ``BB``, ``FixedGrid``, ``Nesterov``).  Knows nothing of the applications.
"""

from .amd import AMD
from .base import RK4, Euler, FixedGrid, Heun, Nesterov, integrate
from .bb import BB
from .krylov import ExponentialIntegrator, FixedStepIntegrator, krylov_phi

__all__ = ["AMD", "BB", "RK4", "Euler", "ExponentialIntegrator", "FixedGrid", "FixedStepIntegrator", "Heun",
           "Nesterov", "integrate", "krylov_phi"]
