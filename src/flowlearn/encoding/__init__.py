"""Gradient flow encoding (paper 002): decoder-only autoencoders; more losses in :mod:`.losses`, models in
:mod:`.models`, data in :mod:`.data`, the solvers ``AMD``, ``BB`` in :mod:`flowlearn.solvers`."""

from .data import load_dataset, training_subset
from .encoder import EncodeResult, GradientFlowEncoder
from .losses import BCE, MSE
from .models import Autoencoder, make_decoder
from .training import TrainConfig, Trainer, TrainResult, evaluate

__all__ = ["Autoencoder", "BCE", "EncodeResult", "GradientFlowEncoder", "MSE", "TrainConfig", "TrainResult",
           "Trainer", "evaluate", "load_dataset", "make_decoder", "training_subset"]
