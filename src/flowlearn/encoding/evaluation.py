"""Validation metric of a trained GFE or AE: mean per-sample loss of its reconstructions."""

from __future__ import annotations

import torch

from .encoder import GradientFlowEncoder
from .losses import resolve_loss

__all__ = ["evaluate"]


def evaluate(model, images: torch.Tensor, *, batch_size: int = 512, loss="bce") -> float:
    """Mean per-sample ``loss`` (default BCE) of ``model``'s reconstructions of ``images`` (N, ...).

    ``model`` is a :class:`GradientFlowEncoder` (codes by its own solver and loss, z(0) = 0) or an
    :class:`Autoencoder` (codes by its encoder).
    """
    fn = resolve_loss(loss)
    total, n = 0.0, 0
    for chunk in images.split(batch_size):
        if isinstance(model, GradientFlowEncoder):
            enc = model.encode(chunk)
            if fn is model.loss_fn or fn == model.loss_fn:   # the encoder's own loss: reuse its values
                per = enc.loss
            else:
                with torch.no_grad():
                    per = fn(model.decoder(enc.z), chunk)
        else:
            with torch.no_grad():
                per = fn(model(chunk), chunk)
        total += float(per.sum())
        n += chunk.shape[0]
    return total / n
