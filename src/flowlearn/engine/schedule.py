"""Step-size schedules shared by the trainers: plain functions of the step number, so that a resumed run
continues them exactly."""

from __future__ import annotations

import math

__all__ = ["cosine_factor"]


def cosine_factor(step: int, total: int, final_fraction: float) -> float:
    r"""Cosine decay from 1 to ``final_fraction`` over ``total`` steps (constant after):
    :math:`f + (1 - f)\,\tfrac12\,(1 + \cos(\pi\,\min(s, T) / T))` with ``T = max(total, 1)``."""
    total = max(int(total), 1)
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
