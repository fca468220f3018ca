"""Probabilistic graphical models: discrete pairwise energies, exact and approximate inference.

Knows nothing of assignment flows (:mod:`flowlearn.randomized` approximates these models).  Modules:
:mod:`.models` (pairwise energies), :mod:`.enumeration` and :mod:`.transfer` (exact inference by
enumeration or a column transfer matrix), :mod:`.mean_field`, :mod:`.gibbs` (Gibbs samplers), :mod:`.bp`
(loopy belief propagation) and :mod:`.entropy` (plug-in, Miller--Madow and Chao--Shen entropy of samples).
"""

from .bp import LoopyBP
from .entropy import entropy_estimates
from .enumeration import exact_inference, kl_from_samples
from .gibbs import GibbsSampler, grid_potts_gibbs
from .mean_field import MeanField
from .models import PairwiseModel, grid_edges, ising_grid, potts_grid
from .transfer import exact_inference_auto, transfer_matrix_inference

__all__ = ["GibbsSampler", "LoopyBP", "MeanField", "PairwiseModel", "entropy_estimates", "exact_inference",
           "exact_inference_auto", "grid_edges", "grid_potts_gibbs", "ising_grid", "kl_from_samples", "potts_grid",
           "transfer_matrix_inference"]
