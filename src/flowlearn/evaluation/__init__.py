"""Evaluation: label-map errors, segmentation scores and the choice of an operating point.

* :mod:`.labels` -- :func:`label_error` (percent of wrong pixels) and :func:`confusion_matrix`;
* :mod:`.segmentation` -- two-label scores (pixel error, membrane F1, adapted Rand error of the cell
  regions) and :func:`tune_threshold`, the ISBI rule that picks a method's operating point on
  validation images.
"""

from .labels import confusion_matrix, label_error
from .segmentation import (
    THRESHOLDS,
    adapted_rand_error,
    f1_score,
    mean_segmentation_metrics,
    segmentation_metrics,
    threshold_labels,
    tune_threshold,
)

__all__ = [
    "THRESHOLDS",
    "adapted_rand_error",
    "confusion_matrix",
    "f1_score",
    "label_error",
    "mean_segmentation_metrics",
    "segmentation_metrics",
    "threshold_labels",
    "tune_threshold",
]
