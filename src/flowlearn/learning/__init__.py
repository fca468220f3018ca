"""Parameter learning of linearized assignment flows (paper 000): loss, closed-form and low-rank gradients,
autodiff baselines, Riemannian optimizers, training, diagnostics, the parameter predictor, the
differentiable layer (:mod:`.layer`) and deep linearized flows (:mod:`.deep`)."""

from .deep import (
    ConvPatchPredictor,
    DeepFlowOutput,
    DeepLinearizedFlow,
    FreePatches,
    PrototypeDistances,
    assignment_nll,
)
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
from .layer import (
    DenseAutograd,
    Exact,
    LinearizedAssignmentLayer,
    LinearizedFlowFunction,
    LowRank,
    linearized_flow,
    tangent_to_assignment,
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
    "ConvPatchPredictor",
    "DeepFlowOutput",
    "DeepLinearizedFlow",
    "DenseAutograd",
    "Exact",
    "ExactGradient",
    "FreePatches",
    "GradientMethod",
    "GradientResult",
    "LearningProblem",
    "LearningResult",
    "LinearizedAssignmentLayer",
    "LinearizedFlowFunction",
    "LowRank",
    "LowRankGradient",
    "PrototypeDistances",
    "RiemannianSGD",
    "SimplexAdam",
    "WeightLearner",
    "assignment_kl",
    "assignment_kl_grad",
    "assignment_nll",
    "label_error_percent",
    "linearized_flow",
    "make_gradient_method",
    "patch_mosaic",
    "patch_regularizer",
    "patch_regularizer_grad",
    "plot_curves",
    "plot_gradient_maps",
    "plot_series",
    "tangent_to_assignment",
]
