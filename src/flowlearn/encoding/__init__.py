"""Gradient flow encoding (paper 002): decoder-only autoencoders.

Public API::

    from flowlearn.encoding import GradientFlowEncoder, EncodeResult, TrainingLoss
    from flowlearn.encoding import make_decoder, make_encoder, Autoencoder, decoder_widths, ConvDecoder
    from flowlearn.encoding import BCE, MSE, GaussianNLL, Masked, ReconstructionLoss, resolve_loss
    from flowlearn.encoding import load_dataset, training_subset, ImageData, read_idx, mnist5k_path
    from flowlearn.encoding import TrainConfig, Trainer, TrainResult, evaluate
    from flowlearn.solvers.amd import AMD, AMDResult, AMDStatus
    from flowlearn.solvers.bb import BB, BBResult

The data-efficiency table of paper 002 is :mod:`flowlearn.experiments.gfe_data_efficiency`.
"""

from .data import load_dataset, training_subset
from .encoder import EncodeResult, GradientFlowEncoder
from .losses import BCE, MSE
from .models import Autoencoder, make_decoder
from .training import TrainConfig, Trainer, TrainResult, evaluate

__all__ = [
    "Autoencoder",
    "BCE",
    "EncodeResult",
    "GradientFlowEncoder",
    "MSE",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "load_dataset",
    "make_decoder",
    "training_subset",
]
