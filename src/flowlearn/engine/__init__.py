"""The training engine shared by every trainer of flowlearn; knows nothing of the applications.

* :func:`run_steps` -- the one loop: resume -> progress -> step -> record -> checkpoint;
* :class:`RunResult` -- the result base (``status``, ``history`` as a list of dicts, ``stats``);
* :mod:`.checkpoint` -- checkpoints with an identity, and :class:`TrainState`, a run's mutable state;
* :func:`run_identity` / :func:`spec` -- run identities from the fields of configs and strategy objects;
* :class:`RunDirectory` -- manifest, lock and no mixing of runs in an output directory;
* :mod:`.distributed` -- data-parallel training under ``torchrun``; :mod:`.schedule` -- step-size schedules.
"""

from .checkpoint import TrainState
from .identity import BOOKKEEPING, EXTENDABLE, run_identity, spec
from .loop import CheckpointPolicy, RunInterrupted, RunResult, run_steps
from .rundir import RunDirectory

__all__ = ["BOOKKEEPING", "CheckpointPolicy", "EXTENDABLE", "RunDirectory", "RunInterrupted", "RunResult",
           "TrainState", "run_identity", "run_steps", "spec"]
