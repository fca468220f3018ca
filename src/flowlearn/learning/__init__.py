"""Learning with linearized assignment flows (paper 000): models and the recipes that train them.

Models: the segmentation head for any backbone (:class:`AssignmentFlowHead`), deep linearized flows
(:class:`DeepLinearizedFlow` with :class:`ConvPatchPredictor` /
:class:`FreePatches` weights and :class:`PrototypeDistances` data terms), the weight-patch predictor of
Sect. 4.4 (:mod:`.predictor`) and the labeler (:mod:`.labeler`).  Recipes, each a step on the training
engine: :class:`WeightLearner` (weight patches of one image), :class:`~.predictor.PredictorTrainer` and
:class:`~.labeler.LabelerTrainer`.  The closed form they all use is :mod:`flowlearn.linearized`.
"""

from .deep import AssignmentFlowHead, ConvPatchPredictor, DeepLinearizedFlow, FreePatches, PrototypeDistances
from .labeler import LabelerTrainer
from .labeler_model import LabelerModel
from .labeler_config import LabelerConfig
from .losses import LearningProblem
from .optim import RiemannianSGD, SimplexAdam
from .predictor import PatchPredictor, PredictorTrainer
from .training import WeightLearner

__all__ = [
    "AssignmentFlowHead",
    "ConvPatchPredictor",
    "DeepLinearizedFlow",
    "FreePatches",
    "LabelerConfig",
    "LabelerModel",
    "LabelerTrainer",
    "LearningProblem",
    "PatchPredictor",
    "PredictorTrainer",
    "PrototypeDistances",
    "RiemannianSGD",
    "SimplexAdam",
    "WeightLearner",
]
