"""The one training loop of every trainer of flowlearn: resume -> progress -> step -> record -> checkpoint."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .._checks import UserInputError, UserTypeError, check_int, check_positive
from ..progress import progress
from ..status import Status
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import world

__all__ = ["CheckpointPolicy", "RunInterrupted", "RunResult", "run_steps"]


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where and how often a run checkpoints.

    Attributes
    ----------
    path : path or None
        Checkpoint file (``None``: no checkpoints, no resume).
    every_steps, every_seconds : int, float
        Write after every this many iterations, and when this many seconds have passed since the last
        write (0: never by time).
    resume, overwrite : bool
        Continue from ``path`` when it exists (its identity must match), or start afresh replacing it; with
        neither, an existing checkpoint is refused (the rule of the command line's ``--resume`` / ``--overwrite``).
    """

    path: Optional[Path] = None
    every_steps: int = 50
    every_seconds: float = 30.0
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self):
        check_int("every_steps", self.every_steps, minimum=1)
        check_positive("every_seconds", self.every_seconds, strict=False)
        for name in ("resume", "overwrite"):
            if not isinstance(getattr(self, name), bool):
                raise UserTypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.resume and self.overwrite:
            raise UserInputError("resume and overwrite exclude each other; pass at most one of them")
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))


@dataclass(kw_only=True)
class RunResult:
    """What every trainer returns: ``status`` (:class:`~flowlearn.status.Status`), ``history``
    (one dict per iteration) and ``stats`` (``iterations``, ``resumed_from``, ``seconds``,
    ``world_size`` and trainer-specific counters)."""

    status: Status
    history: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during :func:`run_steps`; ``str(exc)`` says where the checkpoint stands."""


@contextlib.contextmanager
def _sigterm_flag():
    """While active, SIGTERM sets ``flag["signal"]`` instead of killing the process, so that the loop can
    checkpoint at the end of the current step (main thread only)."""
    flag: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_term(signum, _frame):
        flag["signal"] = signum

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_steps(step: Callable[[int], dict], *, iterations: int, state, identity: dict,
              checkpoint: CheckpointPolicy | None = None, desc: str = "train", show_progress: bool | None = None,
              postfix: tuple = ("loss",), stop_after: int | None = None,
              callback: Callable[[int, dict], None] | None = None) -> RunResult:
    """Run ``step(i)`` for ``i`` in ``[start, iterations)`` with resume, progress and checkpoints.

    ``state`` holds *all* mutable training state, so that a resumed run ends bit for bit where an
    uninterrupted one does; a checkpoint of another ``identity`` is refused by field name.  Checkpoints
    are written by rank 0 only.  Ctrl-C or SIGTERM raises :class:`RunInterrupted`, whose message says which
    iteration the checkpoint holds and how to resume.

    Parameters
    ----------
    step : callable
        ``step(iteration) -> record`` (a dict of numbers, or ``None`` for nothing to record);
        ``iteration`` and cumulative ``seconds`` (step time only) are added to the record.
    state, identity
        An object with ``state_dict`` / ``load_state_dict`` (e.g. a :class:`TrainState`); the config and input
        fingerprint stored with the checkpoint and checked on resume.
    stop_after : int, optional
        Stop after this many total iterations (status ``INTERRUPTED``), e.g. a time-sliced job.
    callback : callable, optional
        ``callback(iteration, record)`` after every recorded step (and its checkpoint, if one was due).
    """
    iterations = check_int("iterations", iterations, minimum=0)
    policy = checkpoint or CheckpointPolicy()
    world_size, rank = world()
    history: list = []
    start, elapsed = 0, 0.0
    if policy.path is not None and policy.path.exists() and not (policy.resume or policy.overwrite):
        raise UserInputError(f"checkpoint {str(policy.path)!r} already exists; pass resume=True to continue that "
                             f"run or overwrite=True to start afresh")
    if policy.path is not None and policy.resume:
        saved = load_checkpoint(policy.path, identity)
        if saved is not None:
            state.load_state_dict(saved["task"])
            history, start, elapsed = list(saved["history"]), int(saved["iteration"]), float(saved["seconds"])
    end = iterations if stop_after is None else min(iterations, check_int("stop_after", stop_after, minimum=0))
    saved_at = {"iteration": start, "time": time.monotonic()}

    def save(done: int) -> None:
        if policy.path is None or rank != 0:
            return
        save_checkpoint(policy.path, {"task": state.state_dict(), "history": history, "iteration": done,
                                      "seconds": elapsed}, identity)
        saved_at.update(iteration=done, time=time.monotonic())

    bar = progress(range(start, end), total=iterations, initial=start, desc=desc,
                   enabled=False if rank != 0 else show_progress)
    it = start

    def where(done: int) -> str:
        if policy.path is None:
            return "no checkpoint was written (no checkpoint path)"
        return (f"the checkpoint {str(policy.path)!r} holds iteration {done} of {iterations}; run the same "
                "command with --resume (resume=True in Python) to continue")

    try:
        with _sigterm_flag() as term:
            for it in bar:
                t0 = time.perf_counter()
                record = step(it)
                elapsed += time.perf_counter() - t0
                if record is not None:
                    record = {"iteration": it, **record, "seconds": elapsed}
                    history.append(record)
                    shown = {k: f"{record[k]:.4g}" for k in postfix if isinstance(record.get(k), (int, float))}
                    if shown:
                        bar.set_postfix(**shown)
                done = it + 1
                due_time = policy.every_seconds > 0 and time.monotonic() - saved_at["time"] >= policy.every_seconds
                if done % policy.every_steps == 0 or due_time or term["signal"] is not None:
                    save(done)
                if callback is not None and record is not None:
                    callback(it, record)
                if term["signal"] is not None:   # SIGTERM: like Ctrl-C, but at the end of a step, checkpointed
                    raise RunInterrupted(f"terminated by SIGTERM after iteration {done} of {iterations}: "
                                         f"{where(done)}")
    except RunInterrupted:
        raise
    except KeyboardInterrupt as exc:
        raise RunInterrupted(f"interrupted at iteration {it} of {iterations}: {where(saved_at['iteration'])}") from exc
    finally:
        bar.close()
    if saved_at["iteration"] != end or policy.path is not None and not policy.path.exists():
        save(end)
    status = Status.COMPLETED if end == iterations else Status.INTERRUPTED
    return RunResult(status=status, history=history,
                     stats={"iterations": end, "resumed_from": start, "seconds": elapsed, "world_size": world_size})
