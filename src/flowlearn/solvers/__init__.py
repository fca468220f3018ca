"""ODE machinery: one ``integrate`` entry point, Runge--Kutta steps, Krylov phi-functions, and the
flow strategies (``AMD``, ``BB``, ``FixedGrid``, ``Nesterov``).

Knows nothing of the applications.
"""

from .amd import AMD, AMDResult, AMDStatus
from .arnoldi import ArnoldiResult, arnoldi
from .base import Solution, Solver, Status, integrate, linear_grid, log_grid
from .bb import BB, BB_VARIANTS, BBResult
from .fixed_grid import FixedGrid, Nesterov
from .krylov import KrylovStatus, PhiResult, krylov_phi, phi_functions
from .linear_ode import ExponentialIntegrator, FixedStepIntegrator, LinearODEResult
from .runge_kutta import RK4, Euler, ExplicitRungeKutta, Heun

__all__ = [
    "AMD",
    "AMDResult",
    "AMDStatus",
    "ArnoldiResult",
    "BB",
    "BBResult",
    "BB_VARIANTS",
    "FixedGrid",
    "Nesterov",
    "KrylovStatus",
    "PhiResult",
    "arnoldi",
    "krylov_phi",
    "phi_functions",
    "RK4",
    "Euler",
    "ExponentialIntegrator",
    "FixedStepIntegrator",
    "LinearODEResult",
    "ExplicitRungeKutta",
    "Heun",
    "Solution",
    "Solver",
    "Status",
    "integrate",
    "linear_grid",
    "log_grid",
]
