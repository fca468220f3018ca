r"""The labeler's model: fixed multi-scale features, a learned data term and ``layers`` re-linearized flows with
predicted weights (:class:`~flowlearn.learning.deep.DeepLinearizedFlow`), on batches of images ``(N, H, W, C)``.
Trained by :class:`~flowlearn.learning.labeler.LabelerTrainer`.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import UserInputError, check_int
from ..linearized import LowRank
from .deep import ClassifierDistances, ConvPatchPredictor, DeepLinearizedFlow, PrototypeDistances
from .features import GaussianFeatureBank
from .labeler_config import LabelerConfig

__all__ = ["LabelerModel"]


class LabelerModel(nn.Module):
    """Features -> data term -> K linearized flow layers; ``model(image (H, W, C))`` -> ``DeepFlowOutput``."""

    def __init__(self, config: LabelerConfig, channels: int, num_labels: int):
        super().__init__()
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)  # the same initial values whatever the default dtype
        try:
            self._build(config, channels, num_labels)
        finally:
            torch.set_default_dtype(old)

    def _build(self, config: LabelerConfig, channels: int, num_labels: int) -> None:
        self.config, self.channels = config, check_int("channels", channels, minimum=1)
        self.num_labels = check_int("num_labels", num_labels, minimum=2)
        F, J = config.features, self.num_labels
        if config.filter_bank:
            self.bank = GaussianFeatureBank(tuple(2.0 ** k for k in range(config.scales)))
            nb = self.bank.out_channels(channels)
            self.register_buffer("bank_mean", torch.zeros(nb))
            self.register_buffer("bank_std", torch.ones(nb))
            self.feature_net = nn.Sequential(nn.Linear(nb, F), nn.Tanh())
            feature_channels, classifier_in = F, nb
        else:
            self.bank = None
            self.feature_net = nn.Sequential(nn.Conv2d(channels, F, 5, padding=2, padding_mode="replicate"),
                                             nn.Tanh(), nn.Conv2d(F, F, 3, padding=1, padding_mode="replicate"),
                                             nn.Tanh())
            feature_channels = classifier_in = F + channels
        if config.data_term == "classifier":
            self.distances = ClassifierDistances(classifier_in, J, hidden=config.hidden)
        else:
            g = torch.Generator().manual_seed(config.seed + 1)
            self.distances = PrototypeDistances(torch.randn(J, feature_channels, generator=g))
        self.predictors = nn.ModuleList(ConvPatchPredictor(feature_channels + J, 9, hidden=config.hidden)
                                        for _ in range(config.layers))
        self._flows: dict = {}

    def inputs(self, image: torch.Tensor) -> torch.Tensor:
        """The fixed part ``(H, W, C_in)``: the standardised filter-bank features, or the image itself."""
        image = image.to(torch.float32)
        if self.bank is None:
            return image
        with torch.no_grad():
            return (self.bank(image) - self.bank_mean) / self.bank_std

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Learned per-pixel features ``(N, F', H, W)`` of the inputs ``(N, H, W, C_in)``."""
        if self.bank is not None:
            return self.feature_net(inputs).movedim(-1, 1)
        x = inputs.movedim(-1, 1)
        return torch.cat([x, self.feature_net(x)], dim=1)

    @property
    def flow(self) -> DeepLinearizedFlow:
        """The K-layer flow (sharing this model's modules), on batches of any size."""
        if "flow" not in self._flows:
            c = self.config
            self._flows["flow"] = DeepLinearizedFlow(list(self.predictors), rho=c.rho, T=c.T,
                                                     method=LowRank(m=c.m, rank=c.rank), feed_assignment=True,
                                                     distances=self.distances)
        return self._flows["flow"]

    def _distances(self, inputs, f):
        use_inputs = self.bank is not None and self.config.data_term == "classifier"
        return self.distances(inputs.movedim(-1, 1) if use_inputs else f)

    def data_term(self, inputs: torch.Tensor) -> torch.Tensor:
        """The distances ``D`` ``(N, J, H, W)`` of precomputed :meth:`inputs` ``(N, H, W, C_in)``."""
        return self._distances(inputs, self.features(inputs))

    def forward_inputs(self, inputs: torch.Tensor):
        """The deep flow on precomputed :meth:`inputs` ``(N, H, W, C_in)`` (or one ``(H, W, C_in)``) ->
        ``DeepFlowOutput`` with ``(N, J, H, W)`` assignments; the batch is one problem of the flow layers."""
        if inputs.ndim == 3:
            inputs = inputs.unsqueeze(0)
        f = self.features(inputs)
        return self.flow(f, self._distances(inputs, f))

    def forward(self, image: torch.Tensor):
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[-1] != self.channels:
            raise UserInputError(f"image must be a tensor (H, W, {self.channels}), got "
                                 f"{tuple(getattr(image, 'shape', ()))}")
        if not image.is_floating_point():   # a uint8 tensor would be read 255 times too bright
            raise UserInputError(f"image must be a float tensor scaled like the training images, got {image.dtype}; "
                                 f"map it with flowlearn.learning.labeler_io.normalise_image")
        return self.forward_inputs(self.inputs(image.to(torch.float32)))

    def probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """Per-pixel class probabilities ``(H, W, J)`` float32: the final assignment :math:`W_T`."""
        with torch.no_grad():
            return self(image).log_assignment[0].exp().movedim(0, -1).to(torch.float32)

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Labels ``(H, W)`` of a full image: the argmax of :meth:`probabilities`."""
        return self.probabilities(image).argmax(-1)

    def predict_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Labels ``(H, W)`` from precomputed :meth:`inputs` ``(H, W, C_in)``."""
        with torch.no_grad():
            return self.forward_inputs(inputs).log_assignment[0].exp().to(torch.float32).argmax(0)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
