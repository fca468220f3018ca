"""Scores of two-label segmentations (1 = membrane, 0 = cell) and the choice of an operating point.

The ISBI 2012 protocol of ``benchmarks/segmentation.py``: every method gives a *score* per image and a
function ``labels_at(score, t)`` turns it into labels at an operating point ``t`` in (0, 1);
``t = 0.5`` is the method's own decision.  :func:`tune_threshold` picks ``t`` on validation images by
adapted Rand error (the challenge scored the best threshold of each submitted probability map), the same
rule for every method.  The adapted Rand error needs scikit-image (the ``bench`` or ``data`` extra).
"""

from __future__ import annotations

import numpy as np

__all__ = ["THRESHOLDS", "adapted_rand_error", "f1_score", "mean_segmentation_metrics", "segmentation_metrics",
           "threshold_labels", "tune_threshold"]

#: the candidate operating points of :func:`tune_threshold`: 0.10, 0.15, ..., 0.90
THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.1, 0.91, 0.05))


def _skimage():
    try:
        from skimage.measure import label as components
        from skimage.metrics import adapted_rand_error as rand_error
    except ImportError as exc:
        raise ImportError("the adapted Rand error needs scikit-image: pip install -e \".[bench]\" "
                          "(or the \"data\" extra)") from exc
    return components, rand_error


def f1_score(pred, truth, label: int = 1) -> float:
    """F1 score of ``label`` (the membrane): ``2 |pred = truth = label| / (|pred = label| + |truth = label|)``
    (0 when neither has the label)."""
    pred, truth = np.asarray(pred).astype(np.int64), np.asarray(truth).astype(np.int64)
    tp = np.sum((pred == label) & (truth == label))
    return float(2 * tp / max(np.sum(pred == label) + np.sum(truth == label), 1))


def adapted_rand_error(pred, truth) -> float:
    """Adapted Rand error of the cell regions: the 4-connected components of label 0 (predicted membrane
    pixels on true cells count as one extra segment, as in ISBI); lower is better."""
    components, rand_error = _skimage()
    pred, truth = np.asarray(pred).astype(np.int64), np.asarray(truth).astype(np.int64)
    return float(rand_error(components(truth == 0, connectivity=1), components(pred == 0, connectivity=1))[0])


def segmentation_metrics(pred, truth) -> dict:
    """``{"pixel_error": %, "f1": membrane F1, "rand_error": adapted Rand error}`` of one label map."""
    pred, truth = np.asarray(pred).astype(np.int64), np.asarray(truth).astype(np.int64)
    return {"pixel_error": 100 * float(np.mean(pred != truth)), "f1": f1_score(pred, truth),
            "rand_error": adapted_rand_error(pred, truth)}


def mean_segmentation_metrics(preds, truths) -> dict:
    """The mean of :func:`segmentation_metrics` over pairs of label maps."""
    ms = [segmentation_metrics(p, t) for p, t in zip(preds, truths)]
    return {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}


def threshold_labels(score, t):
    """Labels of a membrane-probability map at threshold ``t`` (``t = 0.5``: the argmax, ties to cells)."""
    return (np.asarray(score) > t).astype(np.int64)


def tune_threshold(labels_at, val_scores, val_truths, thresholds=THRESHOLDS) -> tuple[float, dict]:
    """The operating point with the least mean adapted Rand error on the validation images (ties: the
    one nearest 0.5), and the validation metrics of every candidate (``{t: mean metrics}``)."""
    table = {t: mean_segmentation_metrics([labels_at(s, t) for s in val_scores], val_truths) for t in thresholds}
    best = min(thresholds, key=lambda t: (table[t]["rand_error"], abs(t - 0.5)))
    return best, table
