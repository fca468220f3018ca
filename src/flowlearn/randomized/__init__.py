"""Randomized assignment flows: approximate Gibbs distributions, sample and infer (paper 001).

The graphical models themselves are :mod:`flowlearn.pgm`; the paper's experiments are in
:mod:`flowlearn.experiments`.  Here, bottom-up: :mod:`.interactions` (the structure of the random
interaction), :mod:`.sflow` (the randomized S-flow) and :mod:`.sampling` (its sampling, marginals and
expectations), :mod:`.objective` (the training objective and its differentiable entropy estimates),
:mod:`.training` (KL training with checkpoints and resume), :mod:`.inference` (table rows against exact
results) and :mod:`.plots`.
"""

from .inference import evaluate_flow, evaluate_flow_roundings, evaluate_samples
from .interactions import ConvInteraction, LabelInteraction, NodeInteraction, SparseInteraction
from .sflow import RandomizedAssignmentFlow
from .training import TrainingConfig, TrainingResult, train_randomized_flow

__all__ = ["ConvInteraction", "LabelInteraction", "NodeInteraction", "RandomizedAssignmentFlow", "SparseInteraction",
           "TrainingConfig", "TrainingResult", "evaluate_flow", "evaluate_flow_roundings", "evaluate_samples",
           "train_randomized_flow"]
