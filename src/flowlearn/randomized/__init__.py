"""Randomized assignment flows: approximate Gibbs distributions, sample and infer (paper 001).

The graphical models themselves (pairwise energies, exact inference, mean field, Gibbs, loopy BP,
entropy of samples) are :mod:`flowlearn.pgm`; the paper's experiments (Table 1, segmentation demos)
are in :mod:`flowlearn.experiments`.  Here, bottom-up:

* :mod:`.interactions` -- the structure of the random interaction, as objects
  (:class:`NodeInteraction`, :class:`LabelInteraction`, :class:`ConvInteraction`, :class:`SparseInteraction`);
* :mod:`.sflow` -- the randomized S-flow (:class:`RandomizedAssignmentFlow`); :mod:`.sampling` -- its
  sampling, marginals and expectations in memory-budget chunks;
* :mod:`.objective` -- the training objective and its differentiable entropy estimates
  (:func:`differentiable_entropy`, :func:`smoothed_support_entropy`, :func:`entropy_score_surrogate`);
* :mod:`.training` -- KL training with Adam, checkpoints and resume (:func:`train_randomized_flow`);
* :mod:`.inference` -- table rows of flows and samples against exact results (:func:`evaluate_flow`, ...);
* :mod:`.embedding` -- the embedding into the meta-simplex (T, Q, Q^T; dense, for small models);
* :mod:`.plots` -- pictures of samples, marginals and training curves.
"""

from .inference import evaluate_flow, evaluate_flow_roundings, evaluate_samples
from .interactions import ConvInteraction, LabelInteraction, NodeInteraction, SparseInteraction
from .sflow import RandomizedAssignmentFlow
from .training import TrainingConfig, TrainingResult, train_randomized_flow

__all__ = [
    "ConvInteraction",
    "LabelInteraction",
    "NodeInteraction",
    "RandomizedAssignmentFlow",
    "SparseInteraction",
    "TrainingConfig",
    "TrainingResult",
    "evaluate_flow",
    "evaluate_flow_roundings",
    "evaluate_samples",
    "train_randomized_flow",
]
