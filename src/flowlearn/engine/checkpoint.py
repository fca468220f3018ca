"""Checkpoints that know which run they belong to (beside the state: the run's configuration and a fingerprint
of its inputs), and :class:`TrainState`, the state they hold.  Files are written atomically and read with
``torch.load(weights_only=True)``, so a checkpoint from an untrusted source cannot execute code.
"""

from __future__ import annotations

import copy
import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._checks import UserInputError
from ..io import atomic_write

__all__ = ["TrainState", "describe_differences", "fingerprint", "load_checkpoint", "load_module_state",
           "load_weights", "save_checkpoint"]

#: what a resumed command has to say to start afresh
OVERWRITE_HINT = "start afresh with --overwrite (CLI) or another checkpoint path"


def fingerprint(*objects) -> str:
    """A short SHA-256 digest of tensors, arrays, numbers, strings and nested containers of them;
    equal inputs (same values, shapes and dtypes) give equal digests on every device."""
    h = hashlib.sha256()

    def feed(obj):
        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu()
            h.update(f"T{tuple(obj.shape)}{obj.dtype}".encode())
            h.update(obj.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if obj.numel() else b"")
        elif isinstance(obj, np.ndarray):
            a = np.ascontiguousarray(obj)
            h.update(f"A{a.shape}{a.dtype}".encode())
            h.update(a.tobytes())
        elif isinstance(obj, dict):
            h.update(b"{")
            for k in sorted(obj, key=str):
                feed(str(k))
                feed(obj[k])
            h.update(b"}")
        elif isinstance(obj, (list, tuple)):
            h.update(b"[")
            for v in obj:
                feed(v)
            h.update(b"]")
        else:
            h.update(repr(obj).encode())

    for o in objects:
        feed(o)
    return h.hexdigest()[:16]


def _flatten(d: Any, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    return {key: leaf for k, v in d.items() for key, leaf in _flatten(v, f"{prefix}.{k}" if prefix else str(k)).items()}


def describe_differences(stored: dict, current: dict, *, limit: int = 6) -> list[str]:
    """``["config.lr: 0.05 in the checkpoint, 0.1 now", ...]`` for every leaf that differs."""
    a, b = _flatten(stored), _flatten(current)
    absent = "<absent>"
    diffs = [f"{key}: {a.get(key, absent)!r} in the checkpoint, {b.get(key, absent)!r} now"
             for key in sorted(set(a) | set(b)) if a.get(key, absent) != b.get(key, absent)]
    if len(diffs) > limit:
        diffs = diffs[:limit] + [f"... and {len(diffs) - limit} more"]
    return diffs


def save_checkpoint(path, state: dict, identity: dict | None = None) -> Path:
    """Write ``state`` (tensors, numbers, strings, containers) and its ``identity`` atomically."""
    buf = io.BytesIO()
    torch.save({"flowlearn_checkpoint": 1, "identity": identity or {}, "state": state}, buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return Path(path)


def _read(path: Path, what: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- any failure to parse a user's file means the file is bad
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"{what} {str(path)!r} is truncated, corrupt or not a flowlearn file "
                             f"({type(exc).__name__}: {first[:160]}); {OVERWRITE_HINT}") from exc


def load_checkpoint(path, identity: dict | None = None) -> dict | None:
    """The state saved at ``path`` by :func:`save_checkpoint`, or ``None`` when there is none; a
    :class:`UserInputError` when the file is truncated or corrupt, or was written by a run with another
    ``identity`` (the message names the fields that differ)."""
    path = Path(path)
    if not path.exists():
        return None
    blob = _read(path, "checkpoint")
    if not isinstance(blob, dict) or blob.get("flowlearn_checkpoint") != 1 or "state" not in blob:
        raise UserInputError(f"checkpoint {str(path)!r} was not written by this version of flowlearn; "
                             f"{OVERWRITE_HINT}")
    if identity is not None and blob.get("identity") != identity:
        diffs = describe_differences(blob.get("identity", {}), identity)
        raise UserInputError(f"checkpoint {str(path)!r} belongs to a different run ({'; '.join(diffs)}); "
                             f"{OVERWRITE_HINT}")
    return blob["state"]


def load_weights(path, *, keys=(), what: str = "model file") -> dict:
    """A dictionary of tensors and plain values saved with ``torch.save``, read with ``weights_only=True``; a
    :class:`UserInputError` when the file cannot be read safely, is not a dictionary or lacks one of ``keys``."""
    path = Path(path)
    state = _read(path, what)
    if isinstance(state, dict) and state.get("flowlearn_checkpoint") == 1:
        state = state["state"]
    if not isinstance(state, dict):
        raise UserInputError(f"{what} {str(path)!r} must hold a dictionary, got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise UserInputError(f"{what} {str(path)!r} lacks the entries {missing}; is it a model written by "
                             f"this command?")
    return state


def load_module_state(module: torch.nn.Module, state: dict, *, what: str = "model") -> None:
    """``module.load_state_dict(state)`` (tensors moved to the module's device) after checking that
    every saved parameter has the module's shape; a mismatch is a one-line :class:`UserInputError`."""
    mine = module.state_dict()
    for k, v in state.items():
        if k in mine and tuple(mine[k].shape) != tuple(v.shape):
            raise UserInputError(f"checkpoint parameter {k!r} has shape {tuple(v.shape)}, the {what} has "
                                 f"{tuple(mine[k].shape)}")
    device = next(iter(mine.values())).device if mine else torch.device("cpu")
    module.load_state_dict({k: v.to(device) for k, v in state.items()})


class TrainState:
    """All mutable training state of a run, by name, saved and restored as one dictionary; each item is

    * a tensor (a parameter being optimised): saved as a copy, restored in place after a shape check;
    * a ``torch.nn.Module``: its ``state_dict``, restored with a shape check per parameter;
    * a ``torch.Generator`` or a list of them: their RNG states;
    * a ``dict`` of plain values (counters, the best score so far): a deep copy, restored in place;
    * any other object with ``state_dict`` / ``load_state_dict`` (optimizers, schedulers).

    A run resumed from ``state_dict()`` therefore continues bit for bit where it stopped.
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
            elif _generators(item):
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
            elif _generators(item):
                for g, st in zip(item, saved):
                    g.set_state(st)
            elif isinstance(item, dict):
                item.clear()
                item.update(copy.deepcopy(saved))
            elif isinstance(item, torch.nn.Module):
                load_module_state(item, saved, what=name)
            else:
                item.load_state_dict(saved)


def _generators(item) -> bool:
    return isinstance(item, (list, tuple)) and all(isinstance(g, torch.Generator) for g in item)
