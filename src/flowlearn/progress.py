"""Progress reporting and reproducibility helpers shared by long-running commands."""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

__all__ = ["progress", "seed_everything"]


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


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g
