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


class ConvDecoder(nn.Module):
    """Convolutional decoder for square images: a linear layer to a ``(2w, s, s)`` feature map
    (``s`` in 4..8), then ``k`` transposed convolutions (kernel 4, stride 2) that double the size
    each, ELU in between, sigmoid (or linear) output.  28x28: ``s = 7``, ``k = 2``; 64x64: ``s = 8``,
    ``k = 3``.  No normalisation layers, so rows never interact (as the gradient flow requires).

    Parameters
    ----------
    latent_dim : int
    image_size : int
        Side of the square output; ``image_size / 2**k`` must be an integer in 4..8 for some ``k >= 1``.
    channels : int
        Image channels.
    width : int
        Channels of the last hidden feature map (the first has ``2 * width``).
    output : {"sigmoid", "linear"}
        Sigmoid for the BCE loss (pixel probabilities), linear for MSE / Gaussian losses.
    flatten : bool
        Return ``(B, channels * image_size**2)`` (the layout of :class:`~flowlearn.encoding.data.ImageData`)
        instead of ``(B, channels, image_size, image_size)``.
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
        layers: list[nn.Module] = [nn.ELU()]
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, dtype=dtype))
            if i < k - 1:
                layers.append(nn.ELU())
        if output == "sigmoid":
            layers.append(nn.Sigmoid())
        self.body = nn.Sequential(*layers)
        self.first_channels = chans[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).reshape(z.shape[0], self.first_channels, self.base, self.base)
        x = self.body(h)
        return x.reshape(z.shape[0], -1) if self.flatten else x
