"""Which training images each optimizer step sees: seeded, replayable, exact image counts."""

from __future__ import annotations

import math
from typing import Optional

import torch

from .._checks import check_choice, check_int

__all__ = ["SAMPLINGS", "BatchSchedule"]

SAMPLINGS = ("epochs", "replacement")


class BatchSchedule:
    """Batches of pool indices for ``n`` images; ``total_steps`` and ``total_images`` are the optimizer steps
    and the images of the whole run.

    Two sampling rules: ``"epochs"`` (passes over the pool, each a permutation seeded by ``(seed, epoch)``,
    split into batches, the last of a pass may be short) and ``"replacement"`` (every batch drawn uniformly
    with replacement, seeded by ``(seed, step)``).  The run ends after ``epochs`` passes or after exactly
    ``images`` images (the last batch is cut).  Batch ``k`` depends only on ``(seed, k)``, so a resumed run
    replays the batches of an uninterrupted one.
    """

    def __init__(self, n: int, batch_size: int, seed: int, *, epochs: int = 1, images: Optional[int] = None,
                 sampling: str = "epochs"):
        self.n = check_int("training subset size", n, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.seed = int(seed)
        check_choice("sampling", sampling, SAMPLINGS)
        self.sampling = sampling
        self.total_images = check_int("images", images, minimum=1) if images is not None else epochs * n
        self.per_epoch = math.ceil(self.n / self.batch_size)
        if sampling == "replacement":
            self.total_steps = math.ceil(self.total_images / self.batch_size)
        else:
            full, rest = divmod(self.total_images, self.n)
            self.total_steps = full * self.per_epoch + math.ceil(rest / self.batch_size)

    def batch(self, step: int) -> torch.Tensor:
        """Pool indices of optimizer step ``step`` (0-based), cut so the run's image count is exact."""
        if self.sampling == "replacement":
            g = torch.Generator().manual_seed(self.seed * 100003 + 7919 * step + 1)
            size = min(self.batch_size, self.total_images - step * self.batch_size)
            return torch.randint(self.n, (size,), generator=g)
        epoch, k = divmod(step, self.per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
        return perm.split(self.batch_size)[k][:self.total_images - self.images_after(step)]

    def images_after(self, steps: int) -> int:
        """Images seen after ``steps`` optimizer steps."""
        if self.sampling == "replacement":
            return min(steps * self.batch_size, self.total_images)
        epochs, k = divmod(steps, self.per_epoch)
        return min(epochs * self.n + min(k * self.batch_size, self.n), self.total_images)

