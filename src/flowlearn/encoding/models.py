"""Decoder of the authors' code scaled to the data size, and the conventional autoencoder.

Released code (paper 002, App. B): decoder ``20 -> 150 -> 300 -> 600 -> 784`` linear layers with ELU in
between and a sigmoid output; the AE's encoder is the exact reverse.  :func:`decoder_widths` keeps the
hidden widths' proportions to the data size and scales the latent dimension by the square root of the size
ratio (**choice**: 784 pixels -> 20 as in the paper, the 64 pixels of scikit-learn's digits -> 6).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .._checks import UserInputError, check_choice, check_int

__all__ = ["Autoencoder", "ConvDecoder", "decoder_widths", "make_decoder", "make_encoder"]

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


def _with_elu(layers: list, sigmoid_output: bool) -> list:
    """``layers`` with ELU in between, and a sigmoid at the end if asked."""
    out = [m for layer in layers for m in (layer, nn.ELU())][:-1]
    return out + [nn.Sigmoid()] if sigmoid_output else out


def _mlp(widths: Sequence[int], sigmoid_output: bool, dtype) -> nn.Sequential:
    """Linear layers created directly in ``dtype`` (a seed gives the same weights whatever the default dtype)."""
    dtype = dtype or torch.get_default_dtype()
    return nn.Sequential(*_with_elu([nn.Linear(a, b, dtype=dtype) for a, b in zip(widths[:-1], widths[1:])],
                                    sigmoid_output))


def make_decoder(data_dim: int, latent_dim: int | None = None, *, dtype=None) -> nn.Sequential:
    """The authors' decoder: linear layers of :func:`decoder_widths` with ELU and a sigmoid output, so that the
    output (B, data_dim) holds pixel probabilities for the BCE loss."""
    return _mlp(decoder_widths(data_dim, latent_dim), sigmoid_output=True, dtype=dtype)


def make_encoder(data_dim: int, latent_dim: int | None = None, *, dtype=None) -> nn.Sequential:
    """The AE's encoder: the decoder's layers in reverse (``data_dim -> ... -> latent``), linear output."""
    return _mlp(decoder_widths(data_dim, latent_dim)[::-1], sigmoid_output=False, dtype=dtype)


class Autoencoder(nn.Module):
    """Conventional autoencoder ``D(E(y))``: ``encoder`` maps flattened images (B, P) to codes (B, d),
    ``decoder`` maps back (:meth:`for_data`: the mirrored MLPs of :func:`make_encoder` / :func:`make_decoder`)."""

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


class ConvDecoder(nn.Module):
    """Convolutional decoder for square images of side ``image_size = s * 2**k`` (``s`` in 4..8, ``k >= 1``):
    a linear layer to a ``(2 * width, s, s)`` feature map, then ``k`` transposed convolutions (kernel 4,
    stride 2) to ``width`` and finally ``channels`` channels, ELU in between, ``output`` sigmoid (for the BCE
    loss) or linear.  No normalisation layers, so rows never interact (as the gradient flow requires).
    ``flatten``: return ``(B, channels * image_size**2)`` (the layout of
    :class:`~flowlearn.encoding.data.ImageData`) instead of ``(B, channels, image_size, image_size)``.
    """

    def __init__(self, latent_dim: int, image_size: int = 28, *, channels: int = 1, width: int = 32,
                 output: str = "sigmoid", flatten: bool = True, dtype=None):
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.image_size = check_int("image_size", image_size, minimum=8)
        self.channels = check_int("channels", channels, minimum=1)
        width = check_int("width", width, minimum=1)
        check_choice("output", output, ("sigmoid", "linear"))
        k, side = 1, image_size / 2
        while side > 8:
            k, side = k + 1, side / 2
        if side != int(side) or side < 4:
            raise UserInputError(f"image_size must be s * 2**k with s in 4..8 and k >= 1 (e.g. 28, 32, 64), "
                                 f"got {image_size}")
        self.base, self.flatten = int(side), bool(flatten)
        dtype = dtype or torch.get_default_dtype()
        chans = [2 * width] + [width] * (k - 1) + [channels]
        self.project = nn.Linear(latent_dim, chans[0] * self.base ** 2, dtype=dtype)
        convs = [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, dtype=dtype) for a, b in zip(chans[:-1], chans[1:])]
        self.body = nn.Sequential(nn.ELU(), *_with_elu(convs, output == "sigmoid"))
        self.first_channels = chans[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).reshape(z.shape[0], self.first_channels, self.base, self.base)
        x = self.body(h)
        return x.reshape(z.shape[0], -1) if self.flatten else x
