"""Run directories: one run's outputs, a manifest, a lock, and no mixing with other runs.

``RunDirectory(out, command=..., config=...)`` used as a context manager

* takes an exclusive lock (``.flowlearn.lock``): a second concurrent writer fails at once with a
  clear message naming the holder's pid;
* refuses a directory that holds an earlier run's outputs, unless ``resume=True`` (same command:
  its checkpoint is then checked by identity) or ``overwrite=True`` (the earlier run's files, as
  listed in its manifest, are removed first); a directory with files flowlearn did not write is
  refused in any case;
* writes ``manifest.json`` (command, argv, config, versions, seed, start, end, status, outputs)
  at the start (status ``running``) and at the end, where every file in the directory is listed as
  an output of the run.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from .._checks import UserInputError
from ..io import ensure_out_dir, save_json

__all__ = ["MANIFEST", "RunDirectory"]

MANIFEST = "manifest.json"
LOCK = ".flowlearn.lock"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict:
    import numpy
    import torch

    from .. import __version__

    return {"flowlearn": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


class RunDirectory:
    """The output directory of one run (see module docstring).

    Parameters
    ----------
    path : path
        The directory (created if needed).
    command : str
        E.g. ``"learn"``; an earlier run of another command is never resumed.
    config : dict
        Recorded in the manifest.
    seed : int, optional
    resume, overwrite : bool
        What to do with an earlier run's outputs (at most one may be true).
    option : str
        How the directory is named to the user in messages (``"--out"``).
    """

    def __init__(self, path, *, command: str, config: dict | None = None, seed: int | None = None,
                 resume: bool = False, overwrite: bool = False, option: str = "--out"):
        if resume and overwrite:
            raise UserInputError("--resume and --overwrite exclude each other: continue the earlier run or "
                                 "replace it, not both")
        self.path = Path(path)
        self.command, self.config, self.seed = command, dict(config or {}), seed
        self.resume, self.overwrite, self.option = bool(resume), bool(overwrite), option
        self.outputs: list[str] = []
        self.resumed = False
        self._lock_fh = None
        self._manifest: dict = {}

    # --- lifecycle
    def __enter__(self) -> "RunDirectory":
        ensure_out_dir(self.path, name=self.option)
        self._lock()
        try:
            self._check_earlier()
            self._manifest = {"command": self.command, "argv": sys.argv[1:], "config": self.config,
                              "seed": self.seed, "versions": _versions(), "pid": os.getpid(), "start": _now(),
                              "end": None, "status": "running", "resumed": self.resumed, "outputs": self.outputs}
            save_json(self.path / MANIFEST, self._manifest)
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            status = self._manifest.get("final_status", "completed")
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "interrupted"
        else:
            status = "failed"
        self._manifest.update(end=_now(), status=status, outputs=sorted(set(self.outputs) | set(self._present())))
        if exc is not None:
            self._manifest["error"] = f"{exc_type.__name__}: {exc}"[:500]
        try:
            save_json(self.path / MANIFEST, self._manifest)
        finally:
            self._unlock()

    # --- use
    def set_status(self, status) -> None:
        """The status the manifest gets when the run ends without an exception."""
        self._manifest["final_status"] = str(status)

    # --- internals
    def _lock(self) -> None:
        fh = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise UserInputError(f"{self.option} directory {str(self.path)!r} is in use by {holder}; wait for it "
                                 f"to finish or choose another {self.option}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"flowlearn {self.command} (pid {os.getpid()})\n")
        fh.flush()
        self._lock_fh = fh

    def _unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _present(self) -> list:
        """Files in the directory (hidden and temporary files aside), the manifest excluded."""
        return sorted(p.name + ("/" if p.is_dir() else "") for p in self.path.iterdir()
                      if not p.name.startswith(".") and not p.name.endswith(".tmp") and p.name != MANIFEST)

    def _check_earlier(self) -> None:
        present = self._present() + ([MANIFEST] if (self.path / MANIFEST).exists() else [])
        if not present:
            return
        where = f"{self.option} directory {str(self.path)!r}"
        manifest_path = self.path / MANIFEST
        if not manifest_path.exists():
            raise UserInputError(f"{where} holds files flowlearn did not write ({', '.join(present[:4])}"
                                 f"{', ...' if len(present) > 4 else ''}); choose an empty or new {self.option}")
        try:
            earlier = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise UserInputError(f"{where} has an unreadable {MANIFEST} ({exc}); choose another {self.option}") from exc
        known = set(earlier.get("outputs", [])) | {MANIFEST}
        if earlier.get("status") == "running":  # its writer died (the lock is free): the files are its own
            known |= set(present)
        foreign = [n for n in present if n not in known]
        if foreign:
            raise UserInputError(f"{where} holds files that its earlier run did not write ({', '.join(foreign[:4])}); "
                                 f"choose an empty or new {self.option}")
        what = f"the outputs of an earlier `flowlearn {earlier.get('command')}` run (status {earlier.get('status')})"
        if self.overwrite:
            for name in known:
                p = self.path / name.rstrip("/")
                if name.endswith("/") and p.is_dir():
                    shutil.rmtree(p)
                elif p.is_file():
                    p.unlink()
            return
        if self.resume:
            if earlier.get("command") != self.command:
                raise UserInputError(f"{where} holds {what}, which `flowlearn {self.command} --resume` cannot "
                                     f"continue; pass --overwrite to replace it or choose another {self.option}")
            self.resumed = True
            self.outputs.extend(n for n in earlier.get("outputs", []) if n not in self.outputs)
            return
        raise UserInputError(f"{where} holds {what}; pass --resume to continue it, --overwrite to replace it, "
                             f"or choose another {self.option}")
