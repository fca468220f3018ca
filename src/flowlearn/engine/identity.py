"""Run identities built from the declared fields of configs and strategy objects (:func:`spec`), never from
``repr``: a checkpoint is resumed only by the run it belongs to (:func:`run_identity`)."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
from pathlib import PurePath
from typing import Any

import numpy as np
import torch

from .checkpoint import fingerprint

__all__ = ["BOOKKEEPING", "EXTENDABLE", "record_hparams", "run_identity", "spec"]

#: ``dataclasses.field(metadata=BOOKKEEPING)``: the field does not change the optimisation (checkpoint
#: frequency, progress display) and is left out of run identities.
BOOKKEEPING = {"identity": False}
#: ``dataclasses.field(metadata=EXTENDABLE)``: a run length that a resumed run may change (continue a run
#: for more iterations); left out of run identities like :data:`BOOKKEEPING`.
EXTENDABLE = {"identity": False, "extendable": True}


def _name(obj) -> str:
    t = obj if isinstance(obj, type) else type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def spec(obj: Any) -> Any:
    """Plain data (dicts, lists, numbers, strings) that describes ``obj`` by its declared fields.

    * dataclass instances: ``{"type": qualified name, field: spec(value), ...}`` for every field not
      marked :data:`BOOKKEEPING`;
    * objects with an ``hparams`` mapping (see :func:`record_hparams`): ``{"type": ..., **spec(hparams)}``;
    * stateless objects: ``{"type": ...}``; functions: their qualified name; tensors, arrays: their fingerprint;
      numbers, strings, ``None``, enums, paths, dtypes, devices, classes, containers: themselves (or their str).

    Any other object raises ``TypeError`` (give it fields: make it a frozen dataclass).
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, enum.Enum):
        return f"{_name(obj)}.{obj.name}"
    if isinstance(obj, (torch.dtype, torch.device, PurePath)):
        return str(obj)
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return {"tensor": fingerprint(obj)}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return spec(obj.item())
    if isinstance(obj, type):
        return _name(obj)
    if isinstance(obj, dict):
        return {str(k): spec(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [spec(v) for v in obj]
    if dataclasses.is_dataclass(obj):
        fields = [f.name for f in dataclasses.fields(obj) if f.metadata.get("identity", True)]
        return {"type": _name(obj), **{name: spec(getattr(obj, name)) for name in fields}}
    hparams = getattr(obj, "hparams", None)
    if isinstance(hparams, dict):
        return {"type": _name(obj), **spec(hparams)}
    if inspect.isfunction(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    if not getattr(obj, "__dict__", None) and not isinstance(obj, torch.nn.Module):
        return {"type": _name(obj)}
    raise TypeError(f"{type(obj).__name__} has no declared fields and cannot be part of a run identity; "
                    f"make it a dataclass or give it an 'hparams' dict")


def record_hparams(obj, arguments: dict) -> dict:
    """Store the constructor ``arguments`` (``locals()`` at the top of ``__init__``) as ``obj.hparams``,
    tensors by fingerprint, so that a module's identity covers every argument it was built with."""
    obj.hparams = {k: (fingerprint(v) if isinstance(v, torch.Tensor) else v) for k, v in arguments.items()
                   if k not in ("self", "__class__") and not k.startswith("_")}
    return obj.hparams


def run_identity(trainer: str, *, inputs: Any = None, **parts) -> dict:
    """``{"trainer": trainer, part: spec(obj), ..., "data": fingerprint(inputs)}``: what a checkpoint
    stores and what a resumed run must match (:func:`~flowlearn.engine.load_checkpoint` names the fields
    that differ)."""
    ident = {"trainer": str(trainer), **{k: spec(v) for k, v in parts.items()}}
    if inputs is not None:
        ident["data"] = fingerprint(inputs)
    return ident
