"""flowlearn: learning and inference with ODE flows.

Three systems share one geometric core:

* assignment flows for image labeling, their linearization solved by Krylov
  exponential integration, and learning of their weight patches
  (:mod:`flowlearn.labeling`, :mod:`flowlearn.learning`);
* randomized assignment flows approximating Gibbs distributions
  (:mod:`flowlearn.randomized`);
* gradient flow encoding, decoder-only autoencoders (:mod:`flowlearn.encoding`).

The bottom layers -- :mod:`flowlearn.geometry` (simplex), :mod:`flowlearn.graphs`
(neighbourhoods and weight operators) and :mod:`flowlearn.solvers` (ODE steps,
Krylov phi-functions) -- know nothing of the applications.
"""

__version__ = "0.1.0"
