"""The training engine shared by every trainer of flowlearn.

* :func:`run_steps` -- the one loop: resume -> progress -> step -> record -> checkpoint;
* :class:`RunResult` -- the result base (``status``, ``history`` as a list of dicts, ``stats``);
* :func:`save_checkpoint` / :func:`load_checkpoint` -- checkpoints with an identity (config and
  input :func:`fingerprint`), read with ``weights_only=True``;
* :func:`run_identity` / :func:`spec` -- run identities from the fields of configs and strategy objects;
* :class:`TrainState` -- the one holder of a run's mutable state (modules, optimizers, generators);
* :class:`RunDirectory` -- manifest, lock and no mixing of runs in an output directory;
* :mod:`.distributed` -- data-parallel training under ``torchrun``;
* :func:`cosine_factor` -- the cosine step-size schedule.

Knows nothing of the applications.
"""

from .identity import BOOKKEEPING, EXTENDABLE, run_identity, spec
from .loop import CheckpointPolicy, RunInterrupted, RunResult, run_steps
from .rundir import RunDirectory
from .state import TrainState

__all__ = [
    "BOOKKEEPING",
    "CheckpointPolicy",
    "EXTENDABLE",
    "RunDirectory",
    "RunInterrupted",
    "RunResult",
    "TrainState",
    "run_identity",
    "run_steps",
    "spec",
]
