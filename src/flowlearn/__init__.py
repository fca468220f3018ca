"""flowlearn: learning and inference with ODE flows.

Three systems share one geometric core:

* assignment flows for image labeling, their linearization in closed form and the learning of their
  weights (:func:`label`, :class:`LinearizedAssignmentLayer`, :class:`AssignmentFlowHead`,
  :class:`DeepLinearizedFlow`,
  :class:`WeightLearner`; packages :mod:`flowlearn.labeling`, :mod:`flowlearn.linearized`,
  :mod:`flowlearn.learning`);
* randomized assignment flows approximating Gibbs distributions (:class:`RandomizedAssignmentFlow`;
  :mod:`flowlearn.randomized`, with the graphical-model library :mod:`flowlearn.pgm`);
* gradient flow encoding, decoder-only autoencoders (:class:`GradientFlowEncoder`; :mod:`flowlearn.encoding`).

The bottom floors -- :mod:`flowlearn.geometry` (simplex), :mod:`flowlearn.graphs` (neighbourhoods and
weight operators), :mod:`flowlearn.solvers` (ODE steps, Krylov phi-functions) and :mod:`flowlearn.engine`
(the training loop, checkpoints, run directories) -- know nothing of the applications.

The names below are imported on first use, so ``import flowlearn`` stays cheap.
"""

from importlib import import_module

#: The package version (also ``flowlearn --version``).
__version__ = "0.1.0"

_NAMES = {
    "label": "flowlearn.labeling",
    "distance_matrix": "flowlearn.labeling",
    "AssignmentFlow": "flowlearn.labeling",
    "LinearizedAssignmentFlow": "flowlearn.labeling",
    "GridWeights": "flowlearn.graphs",
    "LinearizedAssignmentLayer": "flowlearn.linearized",
    "LowRank": "flowlearn.linearized",
    "Exact": "flowlearn.linearized",
    "DeepLinearizedFlow": "flowlearn.learning",
    "AssignmentFlowHead": "flowlearn.learning",
    "LearningProblem": "flowlearn.learning",
    "WeightLearner": "flowlearn.learning",
    "load_model": "flowlearn.learning.labeler",
    "RandomizedAssignmentFlow": "flowlearn.randomized",
    "GradientFlowEncoder": "flowlearn.encoding",
    "make_voronoi": "flowlearn.data",
    "Status": "flowlearn.status",
}

__all__ = sorted(_NAMES) + ["__version__"]


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flowlearn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
