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

    Disabled automatically when ``FLOWLEARN_NO_PROGRESS`` is set (tests, CI logs) or
    when ``enabled=False``.
    """
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = not os.environ.get("FLOWLEARN_NO_PROGRESS")
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
