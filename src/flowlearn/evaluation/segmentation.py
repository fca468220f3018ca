"""The choice of a two-label segmentation's operating point on validation images (the ISBI 2012 rule).

A method gives a membrane-probability map per image (1 = membrane); the challenge scored each submitted
stack at the threshold of the map that maximised its score (one threshold for the whole stack).  On held-out
test images that threshold must come from elsewhere: :func:`tune_threshold` picks it on validation images as
the threshold with the largest foreground-restricted Rand score ``V_rand`` after border thinning
(:func:`flowlearn.evaluation.isbi.isbi_scores`), the same rule for every method; the test images are then
scored at it (and, as the challenge did, also at their own best threshold).
"""

from __future__ import annotations

from .isbi import ISBI_THRESHOLDS, ISBIScores, isbi_scores

__all__ = ["tune_threshold"]


def tune_threshold(prob, truth_membrane, thresholds=ISBI_THRESHOLDS) -> tuple[float, ISBIScores]:
    """The threshold with the largest mean ``V_rand`` over validation images (the first of ties), and their scores.

    Parameters
    ----------
    prob : array ``(H, W)`` or ``(N, H, W)``, membrane probabilities in [0, 1] of the validation images
    truth_membrane : binary array of the same shape, 1 = membrane
    thresholds : sequence of floats in [0, 1] (default: the official grid 0.0, 0.1, ..., 1.0); membrane
        where ``prob >= t``

    Returns
    -------
    (threshold, scores) : float and the validation :class:`~flowlearn.evaluation.isbi.ISBIScores`
        (``threshold == scores.v_rand_threshold``)

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.zeros((20, 20), np.int64); truth[:, 10] = 1          # two cells, one membrane line
    >>> prob = np.where(truth == 1, 0.35, 0.1); prob[5, 10] = 0.25       # a weak membrane pixel
    >>> tune_threshold(prob, truth, thresholds=(0.2, 0.3, 0.5))[0]       # 0.3 leaves a gap; 0.5 no membrane
    0.2
    """
    scores = isbi_scores(prob, truth_membrane, thresholds)
    return scores.v_rand_threshold, scores
