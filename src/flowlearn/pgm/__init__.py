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

from .bp import LoopyBP
from .entropy import entropy_estimates
from .enumeration import exact_inference, kl_from_samples
from .gibbs import GibbsSampler, grid_potts_gibbs
from .mean_field import MeanField
from .models import PairwiseModel, grid_edges, ising_grid, potts_grid
from .transfer import exact_inference_auto, transfer_matrix_inference

__all__ = [
    "GibbsSampler",
    "LoopyBP",
    "MeanField",
    "PairwiseModel",
    "entropy_estimates",
    "exact_inference",
    "exact_inference_auto",
    "grid_edges",
    "grid_potts_gibbs",
    "ising_grid",
    "kl_from_samples",
    "potts_grid",
    "transfer_matrix_inference",
]
