r"""Inference helpers of :class:`~flowlearn.learning.labeler.LabelerModel`: mapping a new image to the value
scale the model was trained at (:func:`normalise_image`, applied by ``flowlearn label IMAGE --model M``),
labelling a stack slice by slice (:func:`label_stack`).  The normalisation rule:

* A model trained on uint8 images (``input_dtype`` "uint8", or in older files ``input_scale`` 255) saw them
  divided by 255: its scale is *unit* ``[0, 1]``.  A model trained on float images saw them unchanged: unit
  scale when its training ``value_range`` lies within ``[-0.5, 1.5]``, otherwise *raw* (its own values).
* Unit scale: uint8 (and other integers in ``[0, 255]``) are divided by 255, uint16 (and other integers in
  ``[0, 65535]``) by 65535; a float image is used as it is (PNG/JPEG are read as floats in ``[0, 1]``), and only
  if that does not fit the training range but its values divided by 255 do, it is divided by 255.
* Raw scale: the image's values are used as they are.
* The mapped values must lie within the training ``value_range`` widened by a quarter of its width on each
  side, else labelling stops with a one-line error; an image spanning less than a tenth of the training
  range is labelled with a printed note.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import UserInputError

__all__ = ["label_stack", "model_scale", "normalise_image"]


def model_scale(meta: dict) -> str:
    """``"unit"`` or ``"raw"``: the value scale of a model's training images (see the module docstring)."""
    dtype = meta.get("input_dtype")
    if dtype is not None and not isinstance(dtype, str):
        raise UserInputError(f"the model's input_dtype must be a dtype name, got {dtype!r}")
    try:
        kind = np.dtype(dtype).kind if dtype is not None else ("u" if float(meta["input_scale"]) != 1.0 else "f")
    except TypeError:
        raise UserInputError(f"the model's input_dtype {dtype!r} is not a dtype name") from None
    if kind in "ui":
        return "unit"
    lo, hi = meta["value_range"]
    return "unit" if lo >= -0.5 and hi <= 1.5 else "raw"


def normalise_image(image, meta: dict, *, name: str = "image") -> tuple[np.ndarray, str, str | None]:
    """``(x float32, how, note)``: ``image`` (any shape and dtype) mapped to the scale of a model with metadata
    ``meta`` (``input_scale``, ``value_range``, ``input_dtype``) by the rule of the module docstring; ``how`` says
    what was done, ``note`` is a warning or None."""
    a = np.asarray(image)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)) or not a.size:
        raise UserInputError(f"{name} must be a non-empty array of real numbers, got dtype {a.dtype}")
    lo, hi = (float(v) for v in meta["value_range"])
    margin = 0.25 * max(hi - lo, 1e-6)
    vmin, vmax = float(a.min()), float(a.max())
    scale = model_scale(meta)
    if scale == "raw":
        candidates = [(1.0, "used as is")]
    elif np.issubdtype(a.dtype, np.integer):
        if a.dtype == np.uint8 or (a.dtype != np.uint16 and vmin >= 0 and vmax <= 255):
            candidates = [(255.0, "divided by 255")]
        elif vmin >= 0 and vmax <= 65535:
            candidates = [(65535.0, "divided by 65535")]
        else:
            candidates = []
    else:
        candidates = [(1.0, "used as is (taken as already scaled to [0, 1])"), (255.0, "divided by 255")]
    for div, how in candidates:
        if lo - margin <= vmin / div and vmax / div <= hi + margin:
            x = (a.astype(np.float64) / div).astype(np.float32)
            span = (vmax - vmin) / div
            note = None
            if span < 0.1 * (hi - lo):
                note = (f"note: {name} spans only [{vmin / div:.3g}, {vmax / div:.3g}] after scaling, the model was "
                        f"trained on [{lo:.3g}, {hi:.3g}]; check how it is scaled")
            return x, how, note
    trained = f"{meta.get('input_dtype', 'uint8' if float(meta['input_scale']) != 1.0 else 'float')} images"
    raise UserInputError(f"{name} has values in [{vmin:.6g}, {vmax:.6g}] (dtype {a.dtype}) that map to no range the "
                         f"model knows: it was trained on {trained} with values [{lo:.3g}, {hi:.3g}] after scaling; "
                         f"rescale the image")


def label_stack(model, stack) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (Z, H, W) int64, probabilities (Z, H, W, J) float32)`` of a normalised ``stack``
    ``(Z, H, W, C)``: the 2-D model on every slice; labels are the argmax of the probabilities."""
    probs = np.stack([model.probabilities(torch.as_tensor(np.asarray(s), dtype=torch.float32)).numpy()
                      for s in stack])
    return probs.argmax(-1).astype(np.int64), probs.astype(np.float32, copy=False)
