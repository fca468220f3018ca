"""Run directories: one run's outputs, a manifest, a lock, and no mixing with other runs (:class:`RunDirectory`)."""

from __future__ import annotations

import datetime
import errno
import json
import os
import platform
import shutil
import stat
import sys
from pathlib import Path

try:                                    # POSIX
    import fcntl
except ImportError:
    fcntl = None
try:                                    # Windows: msvcrt's byte-range lock
    import msvcrt
except ImportError:
    msvcrt = None

import numpy
import torch

from .. import __version__
from .._checks import UserInputError
from ..io import ensure_out_dir, save_json

__all__ = ["MANIFEST", "RunDirectory"]

MANIFEST = "manifest.json"
LOCK = ".flowlearn.lock"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class RunDirectory:
    """The output directory of one run; used as a context manager, it

    * takes an exclusive lock (``.flowlearn.lock``): a second concurrent writer fails at once, naming the
      holder's pid;
    * refuses a directory that holds an earlier run's outputs, unless ``resume=True`` (same command: its
      checkpoint is then checked by identity) or ``overwrite=True`` (the earlier run's files, as listed in
      its manifest, are removed first); a directory with files flowlearn did not write is always refused;
    * writes ``manifest.json`` (command, argv, config, versions, seed, start, end, status, outputs) at the
      start (status ``running``) and at the end, listing every file in the directory as an output.

    Nothing outside the directory is ever written or removed: manifest outputs must be plain names inside it,
    checked before anything is deleted; deletion and the lock file never follow a link; ``overwrite`` checks
    everything first and replaces the manifest last; stale temporaries of flowlearn's atomic writes go.

    Parameters
    ----------
    path, command, config, seed
        The directory (created if needed), the command (e.g. ``"learn"``; an earlier run of another command
        is never resumed), and what the manifest records.
    resume, overwrite : bool
        What to do with an earlier run's outputs (at most one may be true).
    option, resumable : str, bool
        How the directory is named in messages; whether the command has ``--resume`` (else it is never
        told to pass it).
    """

    def __init__(self, path, *, command: str, config: dict | None = None, seed: int | None = None,
                 resume: bool = False, overwrite: bool = False, option: str = "--out", resumable: bool = True):
        if resume and overwrite:
            raise UserInputError("--resume and --overwrite exclude each other: continue the earlier run or "
                                 "replace it, not both")
        self.path, self.option = Path(path), option
        self.command, self.config, self.seed = command, dict(config or {}), seed
        self.resume, self.overwrite, self.resumable = bool(resume), bool(overwrite), bool(resumable)
        self.outputs: list[str] = []
        self.resumed, self._lock_fh, self._manifest = False, None, {}

    def __enter__(self) -> RunDirectory:  # noqa: PYI034 -- typing.Self needs Python 3.11
        ensure_out_dir(self.path, name=self.option)
        self._lock()
        try:
            self._check_earlier()
            versions = {"flowlearn": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
                        "python": platform.python_version()}
            self._manifest = {"command": self.command, "argv": sys.argv[1:], "config": self.config,
                              "seed": self.seed, "versions": versions, "pid": os.getpid(), "start": _now(),
                              "end": None, "status": "running", "resumed": self.resumed, "outputs": self.outputs}
            save_json(self.path / MANIFEST, self._manifest)
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            status = self._manifest.get("final_status", "completed")
        else:
            status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
        try:
            present = self._present()
        except OSError:          # the directory was removed during the run
            present = []
        self._manifest.update(end=_now(), status=status, outputs=sorted(set(self.outputs) | set(present)))
        if exc is not None:
            self._manifest["error"] = f"{exc_type.__name__}: {exc}"[:500]
        try:
            save_json(self.path / MANIFEST, self._manifest)
        except OSError:
            if exc is None:      # the run's own last write failed: report it; else report the run's error
                raise
        finally:
            self._unlock()

    def check(self) -> None:
        """Check, without locking, creating or deleting anything, that the directory could be opened with these
        settings (an earlier run is refused unless resumed or overwritten): commands call it before computing."""
        if self.path.is_dir() and not self.path.is_symlink():
            holder = self._holder()
            if holder is not None:
                raise self._in_use(holder)
            self._inspect()

    def _holder(self) -> str | None:
        """Who holds the directory's lock now (its lock file's text), or None; creates and locks nothing."""
        path = self.path / LOCK
        if fcntl is None or path.is_symlink() or not path.is_file():
            return None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        with os.fdopen(fd) as fh:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return fh.read().strip() or "another process"
            fcntl.flock(fd, fcntl.LOCK_UN)
        return None

    def _in_use(self, holder: str) -> UserInputError:
        return UserInputError(f"{self.option} directory {str(self.path)!r} is in use by {holder}; wait for it to "
                              f"finish or choose another {self.option}")

    def set_status(self, status) -> None:
        """The status the manifest gets when the run ends without an exception."""
        self._manifest["final_status"] = str(status)

    def _lock(self) -> None:
        path, fd, why = self.path / LOCK, None, ""
        try:
            if path.is_symlink():     # O_NOFOLLOW covers POSIX; this covers the rest
                raise OSError(errno.ELOOP, "is a symbolic link")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            why = f" ({exc.strerror})"
        if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
            if fd is not None:
                os.close(fd)
            raise UserInputError(f"{self.option} directory {str(self.path)!r} has a lock file {LOCK} that is not a "
                                 f"regular file{why}; remove it or choose another {self.option}")
        fh = os.fdopen(fd, "r+")
        try:
            _flock(fh, lock=True)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise self._in_use(holder) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"flowlearn {self.command} (pid {os.getpid()})\n")
        fh.flush()
        self._lock_fh = fh

    def _unlock(self) -> None:
        if self._lock_fh is not None:
            _flock(self._lock_fh, lock=False)
            self._lock_fh.close()
            self._lock_fh = None

    def _present(self) -> list:
        """Files in the directory (hidden and temporary files aside), the manifest excluded."""
        return sorted(p.name + ("/" if p.is_dir() else "") for p in self.path.iterdir()
                      if not p.name.startswith(".") and not p.name.endswith(".tmp") and p.name != MANIFEST)

    def _inspect(self):
        """``(earlier manifest, known names)`` of an earlier run that may be resumed or overwritten, ``None``
        for an empty directory; a one-line error for anything else (foreign files, a crafted manifest, an
        earlier run without ``--resume`` / ``--overwrite``, ``--resume`` of another command)."""
        present = self._present() + ([MANIFEST] if (self.path / MANIFEST).exists() else [])
        if not present:
            return None
        where = f"{self.option} directory {str(self.path)!r}"
        manifest_path = self.path / MANIFEST
        if not manifest_path.exists():
            raise UserInputError(f"{where} holds files flowlearn did not write ({', '.join(present[:4])}"
                                 f"{', ...' if len(present) > 4 else ''}); choose an empty or new {self.option}")
        earlier = _read_manifest(manifest_path, where, self.option)
        known = set(earlier["outputs"]) | {MANIFEST}
        if earlier.get("status") == "running":  # its writer died (the lock is free): the files are its own
            known |= set(present)
        foreign = [n for n in present if n not in known]
        if foreign:
            raise UserInputError(f"{where} holds files that its earlier run did not write ({', '.join(foreign[:4])}); "
                                 f"choose an empty or new {self.option}")
        what = f"the outputs of an earlier `flowlearn {earlier.get('command')}` run (status {earlier.get('status')})"
        if self.overwrite:
            return earlier, known
        if self.resume and self.resumable:
            if earlier.get("command") != self.command:
                raise UserInputError(f"{where} holds {what}, which `flowlearn {self.command} --resume` cannot "
                                     f"continue; pass --overwrite to replace it or choose another {self.option}")
            return earlier, known
        if not self.resumable:
            raise UserInputError(f"{where} holds {what}; `flowlearn {self.command}` does not resume: pass "
                                 f"--overwrite to replace it or choose another {self.option}")
        raise UserInputError(f"{where} holds {what}; pass --resume to continue it, --overwrite to replace it, "
                             f"or choose another {self.option}")

    def _check_earlier(self) -> None:
        found = self._inspect()
        if found is None:
            return
        earlier, known = found
        where = f"{self.option} directory {str(self.path)!r}"
        if self.overwrite:
            try:
                for name in sorted(known - {MANIFEST}):
                    _remove_inside(self.path, name)
                _remove_stale_temporaries(self.path)
            except OSError as exc:
                raise UserInputError(f"{where}: cannot remove the earlier run's {exc.filename or 'file'} "
                                     f"({exc.strerror}); remove it by hand or choose another {self.option}") from None
            return
        self.resumed = True
        self.outputs.extend(n for n in earlier["outputs"] if n not in self.outputs)
        _remove_stale_temporaries(self.path)


def _flock(fh, *, lock: bool) -> None:
    """Take an exclusive, non-blocking lock on ``fh`` (``OSError`` when another process holds it), or release it."""
    if fcntl is not None:
        fcntl.flock(fh.fileno(), (fcntl.LOCK_EX | fcntl.LOCK_NB) if lock else fcntl.LOCK_UN)
    elif msvcrt is not None:  # pragma: no cover -- Windows
        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK if lock else msvcrt.LK_UNLCK, 1)


def _valid_output(name) -> bool:
    """A plain name inside the directory: ``"file.png"`` or ``"subdir/"``, nothing that can leave it."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return False
    bare = name.removesuffix("/")
    return bool(bare) and bare not in (".", "..") and "/" not in bare and "\\" not in bare and ":" not in bare


def _read_manifest(path: Path, where: str, option: str) -> dict:
    """The earlier run's manifest, checked: a JSON object whose ``outputs`` are plain names inside the directory."""
    try:
        if path.is_symlink():
            raise ValueError("it is a symbolic link")
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{where} has an unreadable {MANIFEST} ({exc}); choose another {option}") from None
    outputs = earlier.get("outputs") if isinstance(earlier, dict) else None
    if not isinstance(outputs, list):
        raise UserInputError(f"{where} has a {MANIFEST} that is not a flowlearn manifest (expected an object with an "
                             f"'outputs' list); choose another {option}")
    bad = [n for n in outputs if not _valid_output(n)]
    if bad:
        raise UserInputError(f"{where} has a {MANIFEST} that lists outputs outside the directory ({bad[0]!r}); "
                             f"flowlearn removes nothing outside {option}: delete the directory by hand or choose "
                             f"another {option}")
    return earlier


def _remove_inside(root: Path, name: str) -> None:
    """Remove ``root/name`` without following links: a link is unlinked itself, a real directory removed
    with its contents (``shutil.rmtree`` does not follow the links inside)."""
    p = root / name.rstrip("/")
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(p)
    else:
        p.unlink()


def _remove_stale_temporaries(root: Path) -> None:
    """Temporary files that killed atomic writes (:func:`flowlearn.io.atomic_write`) left behind."""
    for p in root.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp") and not p.is_symlink() and p.is_file():
            p.unlink()
