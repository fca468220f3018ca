"""Randomized assignment flows: approximate Gibbs distributions, sample and infer (paper 001).

Building blocks, bottom-up:

* :mod:`.models` -- pairwise energy models (:class:`PairwiseModel`, :func:`ising_grid`, :func:`potts_grid`);
* :mod:`.enumeration` -- exact inference by enumeration (:func:`exact_inference`, :func:`kl_from_table`,
  :func:`kl_from_samples`);
* :mod:`.transfer` -- exact inference on grids by a column transfer matrix
  (:func:`transfer_matrix_inference`, :func:`exact_inference_auto`);
* :mod:`.entropy` -- plug-in (Miller--Madow) and differentiable entropy estimators;
* :mod:`.entropy_estimators` -- Chao--Shen and the paper's smoothed support count
  (:func:`entropy_estimates`, :func:`smoothed_support_entropy`);
* :mod:`.mean_field` -- the mean-field baseline (:class:`MeanField`);
* :mod:`.sflow` -- the randomized S-flow (:class:`RandomizedAssignmentFlow`); :mod:`.sampling`,
  :mod:`.interactions` -- its sampling methods, sparse patterns and memory-budget chunks;
* :mod:`.training` -- KL training with Adam, checkpoints and resume (:func:`train_randomized_flow`);
* :mod:`.inference` -- table rows from 10^6 samples (:func:`evaluate_flow`, ...);
* :mod:`.baselines` -- :class:`GibbsSampler` and :class:`LoopyBP`;
* :mod:`.experiment` -- the Table 1 comparison (:func:`run_ising_experiment`);
* :mod:`.segmentation`, :mod:`.plots` -- pictures.
"""

from .baselines import BeliefPropagationResult, GibbsResult, GibbsSampler, LoopyBP
from .embedding import embed_factorized, embed_tangent, marginalize
from .entropy import (
    PluginEntropy,
    differentiable_entropy,
    entropy_from_counts,
    entropy_score_surrogate,
    mixture_log_density,
    plugin_entropy,
)
from .entropy_estimators import (
    EntropyEstimates,
    chao_shen_entropy,
    entropy_estimates,
    entropy_estimates_from_counts,
    smoothed_support,
    smoothed_support_entropy,
)
from .enumeration import (
    MAX_CONFIGURATIONS,
    ExactResult,
    configuration_index,
    configurations,
    exact_inference,
    kl_from_samples,
    kl_from_table,
    log_probability_table,
)
from .experiment import (
    PAPER_TABLE1,
    IsingExperimentConfig,
    IsingExperimentResult,
    gibbs_reference,
    run_ising_experiment,
)
from .grid_gibbs import grid_potts_gibbs, potts_coupling
from .inference import (
    Evaluation,
    SampleAccumulator,
    evaluate_factorized,
    evaluate_flow,
    evaluate_flow_roundings,
    evaluate_samples,
    marginal_difference,
)
from .interactions import (
    DEFAULT_SAMPLING_MEMORY,
    REFERENCE_DEGREE,
    sampling_chunk_size,
    sparse_pattern,
)
from .mean_field import (
    MeanField,
    MeanFieldResult,
    expected_local_energies,
    mean_field_free_energy,
)
from .models import PairwiseModel, grid_edges, ising_grid, potts_grid
from .photo import (
    PhotoSegmentationConfig,
    PhotoSegmentationResult,
    photo_potts_model,
    run_photo_segmentation,
    sample_diversity,
)
from .sampling import ROUNDINGS, integral_fraction
from .segmentation import (
    SegmentationDemoResult,
    ambiguous_image_model,
    run_segmentation_demo,
)
from .sflow import INTERACTIONS, RandomizedAssignmentFlow
from .training import (
    TrainingConfig,
    TrainingResult,
    kl_objective,
    train_randomized_flow,
)
from .transfer import (
    MAX_COLUMN_STATES,
    TransferMatrixResult,
    exact_inference_auto,
    transfer_matrix_feasible,
    transfer_matrix_inference,
)

__all__ = [
    "BeliefPropagationResult", "Evaluation", "ExactResult", "GibbsResult", "GibbsSampler", "INTERACTIONS",
    "IsingExperimentConfig", "IsingExperimentResult", "LoopyBP", "MAX_CONFIGURATIONS", "MeanField",
    "MeanFieldResult", "PAPER_TABLE1", "PairwiseModel", "PluginEntropy", "RandomizedAssignmentFlow",
    "SampleAccumulator", "SegmentationDemoResult", "TrainingConfig", "TrainingResult", "ambiguous_image_model",
    "configuration_index", "configurations", "differentiable_entropy", "embed_factorized", "embed_tangent",
    "entropy_from_counts", "entropy_score_surrogate", "mixture_log_density", "evaluate_factorized", "evaluate_flow",
    "evaluate_samples", "exact_inference",
    "expected_local_energies", "grid_edges", "ising_grid", "kl_from_samples", "kl_from_table", "kl_objective",
    "log_probability_table", "marginal_difference", "marginalize", "mean_field_free_energy", "plugin_entropy",
    "potts_grid", "run_ising_experiment", "run_segmentation_demo", "train_randomized_flow",
    # exact inference beyond enumeration (transfer.py)
    "MAX_COLUMN_STATES", "TransferMatrixResult", "exact_inference_auto", "transfer_matrix_feasible",
    "transfer_matrix_inference",
    # entropy estimators (entropy_estimators.py)
    "EntropyEstimates", "chao_shen_entropy", "entropy_estimates", "entropy_estimates_from_counts",
    "smoothed_support", "smoothed_support_entropy",
    # scoring what is trained, sparse interactions, memory-budget chunks
    "DEFAULT_SAMPLING_MEMORY", "REFERENCE_DEGREE", "ROUNDINGS", "evaluate_flow_roundings", "gibbs_reference",
    "integral_fraction", "sampling_chunk_size", "sparse_pattern",
    # photographs (photo.py, grid_gibbs.py; flowlearn segment)
    "PhotoSegmentationConfig", "PhotoSegmentationResult", "grid_potts_gibbs", "photo_potts_model", "potts_coupling",
    "run_photo_segmentation", "sample_diversity",
]
