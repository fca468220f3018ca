"""Evaluation: label-map errors, segmentation scores and the choice of an operating point.

* :mod:`.labels` -- :func:`label_error` (percent of wrong pixels) and :func:`confusion_matrix`;
* :mod:`.isbi` -- the official ISBI 2012 scores (:func:`isbi_scores`: V_rand and V_info after border
  thinning, Rand error, pixel error, maximised over thresholds; :func:`rand_scores`, ``info_scores``,
  ``segments_from_probability``), the SNEMI3D :func:`snemi3d_adapted_rand_error` and
  :func:`tune_threshold`, the rule that picks a method's threshold on validation images (the largest V_rand);
* :mod:`.calibration` -- :func:`expected_calibration_error` and ``reliability_diagram``.
"""

from .calibration import expected_calibration_error, reliability_diagram
from .isbi import isbi_scores, rand_scores, snemi3d_adapted_rand_error, tune_threshold
from .labels import confusion_matrix, label_error

__all__ = ["confusion_matrix", "expected_calibration_error", "isbi_scores", "label_error", "rand_scores",
           "reliability_diagram", "snemi3d_adapted_rand_error", "tune_threshold"]
