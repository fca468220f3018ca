"""Probabilistic graphical models: discrete pairwise energies, exact and approximate inference.

Knows nothing of assignment flows (the randomized S-flow that approximates these models lives in
:mod:`flowlearn.randomized`).

* :mod:`.models` -- pairwise energy models (:class:`PairwiseModel`, :func:`ising_grid`, :func:`potts_grid`);
* :mod:`.enumeration` -- exact inference by enumeration (:func:`exact_inference`, :func:`kl_from_table`,
  :func:`kl_from_samples`);
* :mod:`.transfer` -- exact inference on grids by a column transfer matrix
  (:func:`transfer_matrix_inference`, :func:`exact_inference_auto`);
* :mod:`.mean_field` -- the mean-field approximation (:class:`MeanField`);
* :mod:`.gibbs` -- Gibbs samplers (:class:`GibbsSampler`, :func:`grid_potts_gibbs` for grid Potts models);
* :mod:`.bp` -- loopy belief propagation and the Bethe free energy (:class:`LoopyBP`);
* :mod:`.entropy` -- plug-in, Miller--Madow and Chao--Shen entropy of integer samples
  (:func:`entropy_estimates`).
"""

from .bp import BeliefPropagationResult, LoopyBP
from .entropy import EntropyEstimates, entropy_estimates, entropy_estimates_from_counts
from .enumeration import (
    ExactResult,
    configurations,
    exact_inference,
    kl_from_samples,
    kl_from_table,
    log_probability_table,
)
from .gibbs import GibbsResult, GibbsSampler, grid_potts_gibbs
from .mean_field import MeanField, MeanFieldResult, mean_field_free_energy
from .models import PairwiseModel, grid_edges, ising_grid, potts_grid
from .transfer import exact_inference_auto, transfer_matrix_inference

__all__ = [
    # models
    "PairwiseModel", "grid_edges", "ising_grid", "potts_grid",
    # exact inference
    "ExactResult", "configurations", "exact_inference", "exact_inference_auto", "kl_from_samples", "kl_from_table",
    "log_probability_table", "transfer_matrix_inference",
    # approximate inference
    "BeliefPropagationResult", "GibbsResult", "GibbsSampler", "LoopyBP", "MeanField", "MeanFieldResult",
    "grid_potts_gibbs", "mean_field_free_energy",
    # entropy of samples
    "EntropyEstimates", "entropy_estimates", "entropy_estimates_from_counts",
]
