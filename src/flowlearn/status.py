"""One status vocabulary for every computation of flowlearn: every result object (ODE solution, Krylov
:math:`\\varphi`, AMD encoding, labeling, training run) carries a :class:`Status`."""

from __future__ import annotations

import enum

__all__ = ["Status"]


class Status(str, enum.Enum):
    """Why a computation stopped: a ``str`` enum whose members equal their value (``Status.SUCCESS == "success"``),
    carry a human-readable :attr:`message` and say with :attr:`ok` whether the result may be used as an answer."""

    def __new__(cls, value: str, message: str, ok: bool):
        obj = str.__new__(cls, value)
        obj._value_, obj.message, obj.ok = value, message, ok
        return obj

    # --- ODE integration (flowlearn.solvers.integrate)
    SUCCESS = ("success", "reached the end of the time interval", True)
    TERMINATED = ("terminated", "the termination criterion fired (converged)", True)
    MAX_STEPS = ("max_steps", "the step budget ran out before convergence; raise the step budget or the step size",
                 False)
    NONFINITE = ("nonfinite", "the state became NaN or infinite; lower the step size or check the input scale",
                 False)
    # --- Krylov phi (flowlearn.solvers.krylov_phi)
    BREAKDOWN = ("breakdown", "an invariant Krylov subspace was found: exact up to rounding", True)
    MAX_SUBSTEPS = ("max_substeps", "the adaptive sub-step budget ran out before the end time; raise max_substeps "
                    "or lower T", False)
    # --- AMD and other minimising flows (per sample)
    CONVERGED = ("converged", "the gradient norm fell below its tolerance", True)
    STALLED = ("stalled", "no decreasing step was found: stationary to working precision", True)
    FLAT = ("flat", "the loss curve flattened (early stop)", True)
    REACHED_TAU = ("reached_tau", "the integration time reached tau", True)
    # --- labeling
    UNDECIDED = ("undecided", "the assignment stayed (almost) uniform, so no label was chosen; the data term "
                 "vanished: lower rho or raise T", False)
    # --- training runs (flowlearn.engine)
    COMPLETED = ("completed", "ran every iteration", True)
    INTERRUPTED = ("interrupted", "stopped before the last iteration; resume from the checkpoint to finish", False)

    def __str__(self) -> str:  # the value, as the JSON files and the CLI show it
        return self.value
