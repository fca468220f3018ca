"""Learning with linearized assignment flows (paper 000): the segmentation head for any backbone, deep
linearized flows, the weight-patch predictor of Sect. 4.4 (:mod:`.predictor`) and the labeler (:mod:`.labeler`),
with the recipes that train them on the engine (:class:`WeightLearner`, :class:`~.predictor.PredictorTrainer`,
:class:`~.labeler.LabelerTrainer`); all on the closed form of :mod:`flowlearn.linearized`.
"""

from .deep import AssignmentFlowHead, ConvPatchPredictor, DeepLinearizedFlow, FreePatches, PrototypeDistances
from .labeler import LabelerTrainer
from .labeler_config import LabelerConfig
from .labeler_model import LabelerModel
from .losses import LearningProblem
from .predictor import PatchPredictor, PredictorTrainer
from .training import RiemannianSGD, SimplexAdam, WeightLearner

__all__ = ["AssignmentFlowHead", "ConvPatchPredictor", "DeepLinearizedFlow", "FreePatches", "LabelerConfig",
           "LabelerModel", "LabelerTrainer", "LearningProblem", "PatchPredictor", "PredictorTrainer",
           "PrototypeDistances", "RiemannianSGD", "SimplexAdam", "WeightLearner"]
