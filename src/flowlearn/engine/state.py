"""The one holder of a run's mutable state: :class:`TrainState`."""

from __future__ import annotations

import copy

import torch

from .._checks import UserInputError
from .checkpoint import load_module_state

__all__ = ["TrainState"]


class TrainState:
    """All mutable training state of a run, by name, saved and restored as one dictionary.

    Each item is one of

    * a tensor (a parameter being optimised): saved as a copy, restored in place after a shape check;
    * a ``torch.nn.Module``: its ``state_dict``, restored with a shape check per parameter;
    * a ``torch.Generator`` or a list of them: their RNG states;
    * a ``dict`` of plain values (counters, the best score so far): a deep copy, restored in place;
    * any other object with ``state_dict`` / ``load_state_dict`` (optimizers, schedulers).

    A run resumed from ``state_dict()`` therefore continues bit for bit where it stopped.

    Examples
    --------
    >>> state = TrainState(model=model, optimizer=opt, generator=g, best={})   # doctest: +SKIP
    """

    def __init__(self, **items):
        self.items = items

    def state_dict(self) -> dict:
        out = {}
        for name, item in self.items.items():
            if isinstance(item, torch.Tensor):
                out[name] = item.detach().clone()
            elif isinstance(item, torch.Generator):
                out[name] = item.get_state()
            elif isinstance(item, (list, tuple)) and all(isinstance(g, torch.Generator) for g in item):
                out[name] = [g.get_state() for g in item]
            elif isinstance(item, dict):
                out[name] = copy.deepcopy(item)
            else:
                out[name] = item.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        missing = sorted(set(self.items) - set(state))
        if missing:
            raise UserInputError(f"checkpoint state lacks the entries {missing}; was it written by another trainer?")
        for name, item in self.items.items():
            saved = state[name]
            if isinstance(item, torch.Tensor):
                if tuple(saved.shape) != tuple(item.shape):
                    raise UserInputError(f"checkpoint {name} has shape {tuple(saved.shape)}, the run needs "
                                         f"{tuple(item.shape)}")
                with torch.no_grad():
                    item.copy_(saved.to(item))
            elif isinstance(item, torch.Generator):
                item.set_state(saved)
            elif isinstance(item, (list, tuple)) and all(isinstance(g, torch.Generator) for g in item):
                for g, st in zip(item, saved):
                    g.set_state(st)
            elif isinstance(item, dict):
                item.clear()
                item.update(copy.deepcopy(saved))
            elif isinstance(item, torch.nn.Module):
                load_module_state(item, saved, what=name)
            else:
                item.load_state_dict(saved)
