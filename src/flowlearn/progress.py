"""Progress reporting shared by long-running commands (seeding: explicit ``torch.Generator`` objects)."""

from __future__ import annotations

import os
import sys

__all__ = ["progress"]


def progress(iterable=None, *, total=None, desc: str = "", enabled: bool | None = None, **kwargs):
    """A ``tqdm`` progress bar on stderr.

    ``enabled=None`` (default) shows it when stderr is a terminal, or when the environment
    sets ``FLOWLEARN_PROGRESS=1`` (e.g. to follow a batch job's log); ``FLOWLEARN_NO_PROGRESS``
    hides every bar (tests).
    """
    from tqdm.auto import tqdm

    if os.environ.get("FLOWLEARN_NO_PROGRESS"):
        enabled = False
    elif enabled is None:
        enabled = bool(os.environ.get("FLOWLEARN_PROGRESS")) or sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, leave=False, **kwargs)
