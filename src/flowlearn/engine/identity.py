"""Run identities built from the fields of configs and strategy objects, never from ``repr``.

A checkpoint is resumed only by the run it belongs to.  What "the same run" means is decided here,
once for every trainer: :func:`spec` turns a config or strategy object into plain data from its
declared fields (``dataclasses.fields``, or the ``hparams`` mapping of a module that records its
constructor arguments), recursively; :func:`run_identity` joins the trainer's name, the specs of its
config and strategies and a fingerprint of its inputs.

A dataclass field that does not change the optimisation (how often to checkpoint, whether to show
progress) is declared with ``metadata=BOOKKEEPING`` and left out; every other field is in.  An object
that is neither a dataclass nor carries ``hparams`` cannot be part of an identity: :func:`spec` raises
``TypeError`` instead of guessing from a hand-written ``repr``.
"""

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

#: ``dataclasses.field(metadata=BOOKKEEPING)``: the field is left out of run identities.
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
    * objects with an ``hparams`` mapping (modules that record their constructor arguments with
      :func:`record_hparams`): ``{"type": ..., **spec(hparams)}``;
    * stateless objects (no instance attributes): ``{"type": ...}``;
    * tensors and arrays: their fingerprint; numbers, strings, ``None``, enums, paths, dtypes,
      devices, classes, containers of these: as themselves (or their string).

    Raises
    ------
    TypeError
        For any other object (give it fields: make it a frozen dataclass).
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
        out = {"type": _name(obj)}
        for f in dataclasses.fields(obj):
            if f.metadata.get("identity", True):
                out[f.name] = spec(getattr(obj, f.name))
        return out
    hparams = getattr(obj, "hparams", None)
    if isinstance(hparams, dict):
        return {"type": _name(obj), **spec(hparams)}
    if inspect.isfunction(obj):    # a plain function (e.g. a user's loss) is identified by where it is defined
        return f"{obj.__module__}.{obj.__qualname__}"
    if not getattr(obj, "__dict__", None) and not isinstance(obj, torch.nn.Module):
        return {"type": _name(obj)}
    raise TypeError(f"{type(obj).__name__} has no declared fields and cannot be part of a run identity; "
                    f"make it a dataclass or give it an 'hparams' dict")


def record_hparams(obj, arguments: dict, *, skip: tuple = ("self", "__class__")) -> dict:
    """Store the constructor ``arguments`` (``locals()`` at the top of ``__init__``) as ``obj.hparams``.

    Tensors among them are kept by fingerprint, so the identity of a module covers every argument it
    was built with, present and future, without a hand-written list.
    """
    hp = {k: v for k, v in arguments.items() if k not in skip and not k.startswith("_")}
    obj.hparams = {k: (fingerprint(v) if isinstance(v, torch.Tensor) else v) for k, v in hp.items()}
    return obj.hparams


def run_identity(trainer: str, *, inputs: Any = None, **parts) -> dict:
    """``{"trainer": trainer, part: spec(obj), ..., "data": fingerprint(inputs)}``: what a checkpoint
    stores and what a resumed run must match (:func:`~flowlearn.engine.load_checkpoint` names the fields
    that differ)."""
    ident = {"trainer": str(trainer)}
    for k, v in parts.items():
        ident[k] = spec(v)
    if inputs is not None:
        ident["data"] = fingerprint(inputs)
    return ident
