"""Checkpoints that know which run they belong to.

A checkpoint stores, beside the training state, an *identity*: the full configuration of the run
and a fingerprint of its inputs (image, labels, model, data).  :func:`load_checkpoint` restores a
state only when the identity matches and otherwise raises a one-line :class:`UserInputError` that
names the fields that differ.  Files are written atomically and read with
``torch.load(weights_only=True)``: only tensors, numbers, strings and containers of them, so a
checkpoint from an untrusted source cannot execute code.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._checks import UserInputError
from ..io import atomic_write

__all__ = ["describe_differences", "fingerprint", "load_checkpoint", "load_module_state", "load_weights",
           "save_checkpoint"]

#: what a resumed command has to say to start afresh
OVERWRITE_HINT = "start afresh with --overwrite (CLI) or another checkpoint path"


def fingerprint(*objects) -> str:
    """A short SHA-256 digest of tensors, arrays, numbers, strings and nested containers of them.

    Equal inputs (same values, shapes and dtypes) give equal digests on every device.
    """
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
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def describe_differences(stored: dict, current: dict, *, limit: int = 6) -> list[str]:
    """``["config.lr: 0.05 in the checkpoint, 0.1 now", ...]`` for every leaf that differs."""
    a, b = _flatten(stored), _flatten(current)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            diffs.append(f"{key}: {a.get(key, '<absent>')!r} in the checkpoint, {b.get(key, '<absent>')!r} now")
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
    """The state saved at ``path`` by :func:`save_checkpoint`, or ``None`` when there is none.

    Raises
    ------
    UserInputError
        When the file is truncated or corrupt, or was written by a run with another identity
        (the message names the fields that differ).
    """
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
    """A dictionary of tensors and plain values saved with ``torch.save``, read with ``weights_only=True``.

    Raises
    ------
    UserInputError
        When the file cannot be read safely, is not a dictionary or lacks one of ``keys``.
    """
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
