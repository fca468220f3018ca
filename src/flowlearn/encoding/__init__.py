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

from .adjoint import (
    ADJOINTS,
    AMDReplay,
    FixedGridReplay,
    adjoint_final_state,
    unrolled_final_state,
)
from .data import (
    DATASETS,
    ImageData,
    load_dataset,
    mnist5k_path,
    read_idx,
    training_subset,
)
from .encoder import SOLVERS, GradientFlowEncoder
from .flows import (
    LOSSES,
    GradientFlowField,
    NesterovField,
    alpha_schedule,
    reconstruction_loss,
    time_grid,
)
from .losses import BCE, MSE, GaussianNLL, Masked, ReconstructionLoss, resolve_loss
from .models import Autoencoder, ConvDecoder, decoder_widths, make_decoder, make_encoder
from .results import EncodeResult, TrainingLoss
from .schedule import SAMPLINGS, BatchSchedule
from .plots import (
    class_spread_sample,
    plot_curves,
    plot_data_efficiency,
    reconstructions_for,
    save_reconstruction_grid,
)
from .training import MODELS, OPTIMIZERS, TrainConfig, Trainer, TrainResult, evaluate

__all__ = [
    "ADJOINTS", "AMDReplay", "Autoencoder", "BCE", "BatchSchedule", "ConvDecoder", "GaussianNLL", "MSE", "Masked",
    "ReconstructionLoss", "SAMPLINGS", "resolve_loss",
    "class_spread_sample", "DATASETS", "EncodeResult", "FixedGridReplay",
    "GradientFlowEncoder", "GradientFlowField", "ImageData", "LOSSES", "MODELS", "NesterovField", "OPTIMIZERS",
    "SOLVERS", "TrainConfig", "TrainResult", "Trainer", "TrainingLoss", "adjoint_final_state", "alpha_schedule",
    "decoder_widths", "evaluate", "load_dataset", "make_decoder", "make_encoder", "mnist5k_path",
    "plot_curves", "plot_data_efficiency", "read_idx", "reconstruction_loss", "reconstructions_for",
    "save_reconstruction_grid",
    "time_grid", "training_subset", "unrolled_final_state",
]
