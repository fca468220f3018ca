"""Parameter learning of linearized assignment flows (paper 000): loss, closed-form and low-rank gradients,
autodiff baselines, Riemannian optimizers, training, diagnostics and the parameter predictor."""

from .gradients import (
    GRADIENT_METHODS,
    AutodiffEulerGradient,
    AutodiffExpintGradient,
    ExactGradient,
    GradientMethod,
    GradientResult,
    LowRankGradient,
    make_gradient_method,
)
from .losses import (
    LearningProblem,
    assignment_kl,
    assignment_kl_grad,
    patch_regularizer,
    patch_regularizer_grad,
)
from .optim import RiemannianSGD, SimplexAdam
from .plots import patch_mosaic, plot_curves, plot_gradient_maps, plot_series
from .training import OPTIMIZERS, LearningResult, WeightLearner, label_error_percent

__all__ = [
    "GRADIENT_METHODS",
    "OPTIMIZERS",
    "AutodiffEulerGradient",
    "AutodiffExpintGradient",
    "ExactGradient",
    "GradientMethod",
    "GradientResult",
    "LearningProblem",
    "LearningResult",
    "LowRankGradient",
    "RiemannianSGD",
    "SimplexAdam",
    "WeightLearner",
    "assignment_kl",
    "assignment_kl_grad",
    "label_error_percent",
    "make_gradient_method",
    "patch_mosaic",
    "patch_regularizer",
    "patch_regularizer_grad",
    "plot_curves",
    "plot_gradient_maps",
    "plot_series",
]
