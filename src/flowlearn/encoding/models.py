"""Decoder of the authors' code scaled to the data size, and the conventional autoencoder.

Released code (paper 002, App. B): latent dimension 20, decoder ``20 -> 150 -> 300 -> 600 -> 784``
linear layers with ELU in between and a sigmoid output; the AE's encoder is the exact reverse.
:func:`decoder_widths` keeps the hidden widths' proportions to the data size
(150/784, 300/784, 600/784) and scales the latent dimension by the square root of the size
ratio (**choice**: 784 pixels -> 20, the 64 pixels of scikit-learn's digits -> 6), so that the
paper's architecture is reproduced exactly on 28x28 images.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .._checks import check_int

__all__ = ["Autoencoder", "decoder_widths", "make_decoder", "make_encoder"]

_PAPER_PIXELS = 784
_PAPER_HIDDEN = (150, 300, 600)
_PAPER_LATENT = 20


def decoder_widths(data_dim: int, latent_dim: int | None = None) -> list[int]:
    """Layer widths ``[latent, h1, h2, h3, data_dim]`` of the decoder for ``data_dim`` pixels."""
    data_dim = check_int("data_dim", data_dim, minimum=2)
    ratio = data_dim / _PAPER_PIXELS
    if latent_dim is None:
        latent_dim = int(min(max(round(_PAPER_LATENT * math.sqrt(ratio)), 2), data_dim - 1))
    latent_dim = check_int("latent_dim", latent_dim, minimum=1)
    hidden = [max(math.ceil(h * ratio), latent_dim) for h in _PAPER_HIDDEN]
    return [latent_dim, *hidden, data_dim]


def _mlp(widths: Sequence[int], sigmoid_output: bool, dtype) -> nn.Sequential:
    """Linear layers created directly in ``dtype`` (so a seed gives the same weights whatever the
    process-wide default dtype is)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, dtype=dtype or torch.get_default_dtype()))
        if i < len(widths) - 2:
            layers.append(nn.ELU())
    if sigmoid_output:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def make_decoder(data_dim: int, latent_dim: int | None = None, *, dtype=None) -> nn.Sequential:
    """The authors' decoder: linear layers of :func:`decoder_widths` with ELU and a sigmoid output.

    Output shape (B, data_dim), entries in (0, 1) (pixel probabilities for the BCE loss).
    """
    return _mlp(decoder_widths(data_dim, latent_dim), sigmoid_output=True, dtype=dtype)


def make_encoder(data_dim: int, latent_dim: int | None = None, *, dtype=None) -> nn.Sequential:
    """The AE's encoder: the decoder's layers in reverse (``data_dim -> ... -> latent``), linear output."""
    widths = decoder_widths(data_dim, latent_dim)[::-1]
    return _mlp(widths, sigmoid_output=False, dtype=dtype)


class Autoencoder(nn.Module):
    """Conventional autoencoder ``D(E(y))`` whose encoder mirrors the decoder.

    Parameters
    ----------
    encoder, decoder : nn.Module
        ``encoder`` maps flattened images (B, P) to codes (B, d); ``decoder`` maps back.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @classmethod
    def for_data(cls, data_dim: int, latent_dim: int | None = None, *, dtype=None) -> "Autoencoder":
        return cls(make_encoder(data_dim, latent_dim, dtype=dtype), make_decoder(data_dim, latent_dim, dtype=dtype))

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Codes (B, d) of images ``y`` (B, ...)."""
        return self.encoder(y.reshape(y.shape[0], -1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Reconstructions (B, P)."""
        return self.decoder(self.encode(y))
