"""The official scores of the ISBI 2012 EM segmentation challenge (and the SNEMI3D adapted Rand error).

Segments.  A membrane-probability map ``prob`` (1 = membrane) is cut at a threshold ``t``: membrane
where ``prob >= t``; the cells are the 4-connected components of the non-membrane pixels.  *Border
thinning* floods the membrane pixels from the cells with the watershed of Vincent & Soille [3] on the
binary image (4-connectivity, pixels scanned column by column, neighbours left, up, right, down), as the
challenge's Fiji code (``WatershedTransform2D`` [2]): the pixels where two basins meet stay boundary --
dams 1 pixel wide.  A map without cells or without membrane is one segment.  The truth's cells are never
thinned.

Scores ([1], eqs. 3 and 6; [2]).  Only the pixels of the true cells count (*foreground restriction*);
each predicted boundary pixel on them is a segment of its own.  With ``p_ij`` the fraction of those
pixels in predicted segment ``i`` and true cell ``j``, ``s_i = sum_j p_ij`` and ``t_j = sum_i p_ij``:

* ``V_rand = sum p_ij^2 / (a sum s_i^2 + (1-a) sum t_j^2)`` with ``a = 1/2``, the harmonic mean of
  ``V_rand_split = sum p_ij^2 / sum t_j^2`` and ``V_rand_merge = sum p_ij^2 / sum s_i^2``;
* ``V_info``, the harmonic mean of ``V_info_split = I(S;T) / H(S)`` and ``V_info_merge = I(S;T) / H(T)``
  (``S`` predicted, ``T`` true; natural logarithms).

Stacks ``(N, H, W)`` are scored slice by slice and ``V_rand``, ``V_info`` averaged over the slices (the
official macro average).  *Rand error* = 1 - the maximal Rand F-score *without* thinning and *pixel error*
= 1 - the maximal pixel F-score are micro-averaged over the slices, as in [2].

:func:`tune_threshold` picks a method's threshold on validation images as the one of largest ``V_rand``
(the same rule for every method); held-out test images are then scored at it.

References
----------
.. [1] I. Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation algorithms for
   connectomics", Front. Neuroanat. 9:142 (2015), doi:10.3389/fnana.2015.00142.
.. [2] Fiji, Trainable_Segmentation: ``trainableSegmentation.metrics.RandError.getMaximalVRandAfterThinning``,
   ``VariationOfInformation.getMaximalVInfoAfterThinning``, ``PixelError``, ``utils.WatershedTransform2D``;
   the script "Segmentation evaluation after border thinning" (imagej.net).
.. [3] L. Vincent, P. Soille, "Watersheds in digital spaces: an efficient algorithm based on immersion
   simulations", IEEE TPAMI 13(6):583-598 (1991).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .._checks import UserInputError, check_choice

__all__ = ["ISBI_THRESHOLDS", "ISBIScores", "SegmentationScores", "info_scores", "isbi_scores", "pixel_fscore",
           "rand_scores", "segments_from_probability", "snemi3d_adapted_rand_error", "tune_threshold"]

#: the thresholds of the official script, 0.0, 0.1, ..., 1.0 (its ``th`` on cell probabilities is ``1 - t``)
ISBI_THRESHOLDS = tuple(k / 10 for k in range(11))
_FOUR = ndimage.generate_binary_structure(2, 1)
_MASK, _QUEUED = -2, -3
_POSITIVES = ("cell", "membrane")


@dataclass(frozen=True)
class SegmentationScores:
    """A foreground-restricted F-score and its two parts (1 = perfect): ``score`` is the harmonic mean of
    ``split`` (1 unless true cells are split) and ``merge`` (1 unless true cells are merged)."""

    score: float
    split: float
    merge: float


@dataclass(frozen=True)
class ISBIScores:
    """The result of :func:`isbi_scores` (scores: higher is better; errors: lower is better).

    ``v_rand``/``v_info``: the maxima over ``thresholds`` of the curves ``v_rand_curve``/``v_info_curve``
    (shape ``(len(thresholds),)``), reached first at ``v_rand_threshold``/``v_info_threshold``;
    ``rand_error = 1 - max(rand_f_curve)`` and ``pixel_error = 1 - max(pixel_f_curve)`` (ISBI 2012)."""

    thresholds: np.ndarray
    v_rand: float
    v_rand_threshold: float
    v_info: float
    v_info_threshold: float
    rand_error: float
    pixel_error: float
    v_rand_curve: np.ndarray
    v_info_curve: np.ndarray
    rand_f_curve: np.ndarray
    pixel_f_curve: np.ndarray


def _numeric(name, x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype != bool and not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise UserInputError(f"{name} must be a real array, got dtype {a.dtype}")
    return a


def _probability(name, x, ndims=(2, 3)) -> np.ndarray:
    """``x`` as float64 probabilities, non-empty, of a dimension in ``ndims`` (``None``: any)."""
    a = _numeric(name, x).astype(np.float64)
    if (ndims is not None and a.ndim not in ndims) or a.size == 0:
        what = " or ".join(f"{d}-D" for d in ndims) + " " if ndims else ""
        raise UserInputError(f"{name} must be a non-empty {what}array, got shape {a.shape}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise UserInputError(f"{name} must hold probabilities in [0, 1], got values in [{np.nanmin(a):.4g}, "
                             f"{np.nanmax(a):.4g}]" + (" and NaN/inf" if not np.isfinite(a).all() else ""))
    return a


def _binary(name, x, like_name, like) -> np.ndarray:
    a = _numeric(name, x)
    if a.shape != like.shape:
        raise UserInputError(f"{name} must have the shape of {like_name} {like.shape}, got {a.shape}")
    if a.dtype != bool and not np.isin(a, (0, 1)).all():
        bad = np.unique(a[~np.isin(a, (0, 1))])[:3].tolist()
        raise UserInputError(f"{name} must be binary (0 or 1), got values such as {bad}")
    return a.astype(bool)


def _labels(name, x) -> np.ndarray:
    a = _numeric(name, x)
    if a.ndim == 0 or a.size == 0:
        raise UserInputError(f"{name} must be a non-empty label image, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating) and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise UserInputError(f"{name} must hold integer labels, got non-integer values of dtype {a.dtype}")
    if a.min() < 0:
        raise UserInputError(f"{name} must hold non-negative labels, got minimum {a.min()}")
    return a.astype(np.int64)


def _thresholds(thresholds) -> np.ndarray:
    try:
        t = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    except (TypeError, ValueError):
        t = np.array([np.nan])
    if t.ndim != 1 or t.size == 0 or not np.isfinite(t).all() or t.min() < 0 or t.max() > 1:
        raise UserInputError(f"thresholds must be a non-empty list of numbers in [0, 1], got {thresholds!r}")
    return t


def _components(cells: np.ndarray) -> np.ndarray:
    """4-connected components of a 2-D boolean image (labels 1..k, 0 elsewhere)."""
    return ndimage.label(cells, structure=_FOUR)[0].astype(np.int64)


def _watershed_thin(membrane: np.ndarray) -> np.ndarray:
    """Fiji's ``WatershedTransform2D(binary, 4)`` on a 2-D membrane mask: labels, 0 = dams."""
    basins = _components(~membrane)
    if not membrane.any() or basins.max() == 0:          # one flat level: a single basin
        return np.ones(membrane.shape, np.int64)
    h, w = membrane.shape
    # Fiji scans x (column) outer, y (row) inner: work on the transpose, flat index x * h + y
    lab = basins.T.ravel().tolist()
    near = ndimage.binary_dilation(~membrane, structure=_FOUR) & membrane
    for i in np.flatnonzero(membrane.T).tolist():
        lab[i] = _MASK
    seeds = np.flatnonzero(near.T).tolist()
    for i in seeds:
        lab[i] = _QUEUED
    fifo = deque(seeds)
    while fifo:
        p = fifo.popleft()
        x, y = divmod(p, h)
        state, flag = _QUEUED, False
        for q in ((p - h) if x > 0 else -1, (p - 1) if y > 0 else -1,
                  (p + h) if x < w - 1 else -1, (p + 1) if y < h - 1 else -1):
            if q < 0:
                continue
            lq = lab[q]
            if lq > 0:                                    # a labelled basin
                if state == _QUEUED or (state == 0 and flag):
                    state = lq
                elif state > 0 and state != lq:
                    state, flag = 0, False
            elif lq == 0:                                 # a dam
                if state == _QUEUED:
                    state, flag = 0, True
            elif lq == _MASK:
                lab[q] = _QUEUED
                fifo.append(q)
        lab[p] = state
    out = np.asarray(lab, dtype=np.int64).reshape(w, h).T
    return np.where(out > 0, out, 0)


def segments_from_probability(prob, threshold: float, *, thin: bool = True) -> np.ndarray:
    """Segments of a membrane-probability map at one threshold.

    Parameters
    ----------
    prob : array ``(H, W)`` or ``(N, H, W)``, values in [0, 1] (1 = membrane)
    threshold : float in [0, 1]; a pixel is membrane where ``prob >= threshold``
    thin : bool
        The challenge's border thinning (module docstring), else the components of the non-membrane pixels.

    Returns
    -------
    labels : int64 array, shape of ``prob``; 0 = boundary, segments 1, 2, ... (slices of a stack get
        distinct labels)
    """
    prob = _probability("prob", prob)
    try:
        t = float(threshold) if np.ndim(threshold) == 0 else np.nan
    except (TypeError, ValueError):
        t = np.nan
    if not 0 <= t <= 1:
        raise UserInputError(f"threshold must be one number in [0, 1], got {threshold!r}")
    stack = prob if prob.ndim == 3 else prob[None]
    out, offset = np.zeros(stack.shape, np.int64), 0
    for k, sl in enumerate(stack):
        membrane = sl >= t
        lab = _watershed_thin(membrane) if thin else _components(~membrane)
        out[k] = np.where(lab > 0, lab + offset, 0)
        offset = int(out[k].max(initial=offset))
    return out if prob.ndim == 3 else out[0]


def _contingency(pred: np.ndarray, true: np.ndarray, *, singletons: bool = True):
    """Counts ``n_ij`` (non-zero entries), predicted sizes and true sizes over the pixels with ``true > 0``;
    predicted label 0 there becomes one segment per pixel when ``singletons``."""
    keep = true > 0
    t, s = true[keep], pred[keep].copy()
    if t.size == 0:
        raise UserInputError("true_labels must have foreground (non-zero) pixels, got none")
    if singletons:
        zero = s == 0
        s[zero] = s.max() + 1 + np.arange(int(zero.sum()))
    _, ti = np.unique(t, return_inverse=True)
    _, si = np.unique(s, return_inverse=True)
    _, nij = np.unique(ti.ravel() * (int(si.max()) + 1) + si.ravel(), return_counts=True)
    return nij.astype(np.int64), np.bincount(si.ravel()).astype(np.int64), np.bincount(ti.ravel()).astype(np.int64)


def _rand_counts(pred, true):
    nij, s, t = _contingency(pred, true)
    return int(nij @ nij), int(s @ s), int(t @ t)        # sum n_ij^2, sum s_i^2, sum t_j^2 (ordered pairs)


def _fiji_f(tp: float, fp: float, fn: float) -> float:
    """F-score as Fiji's ``ClassificationStatistics``: precision (recall) is 1 when there is no fp (fn)."""
    prec = 1.0 if fp == 0 else tp / (tp + fp)
    rec = 1.0 if fn == 0 else tp / (tp + fn)
    return 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0


def _pair(name_pred, pred_labels, name_true, true_labels):
    pred, true = _labels(name_pred, pred_labels), _labels(name_true, true_labels)
    if pred.shape != true.shape:
        raise UserInputError(f"{name_pred} must have the shape of {name_true} {true.shape}, got {pred.shape}")
    return pred, true


def rand_scores(pred_labels, true_labels) -> SegmentationScores:
    """Foreground-restricted Rand F-score ``V_rand`` of [1] (eq. 3, ``a = 1/2``) of two label images.

    ``V_rand = 2 sum n_ij^2 / (sum s_i^2 + sum t_j^2)`` with the counts ``n_ij`` of pixels in predicted
    segment ``i`` and true segment ``j``, over the pixels with ``true_labels > 0``; a pixel with
    ``pred_labels == 0`` there is a segment of its own (as in [2]).

    Parameters
    ----------
    pred_labels, true_labels : non-negative integer arrays of one shape (any dimension)
    """
    pred, true = _pair("pred_labels", pred_labels, "true_labels", true_labels)
    sp, ss, st = _rand_counts(pred, true)
    return SegmentationScores(2 * sp / (ss + st), sp / st, sp / ss)


def _entropy(counts: np.ndarray, n: int) -> float:
    q = counts[counts > 0] / n
    return float(-(q @ np.log(q)))


def info_scores(pred_labels, true_labels) -> SegmentationScores:
    """Foreground-restricted information-theoretic score ``V_info`` of [1] (eq. 6) of two label images.

    With the pixels and singletons of :func:`rand_scores`: ``split = I(S;T) / H(S)``, ``merge = I(S;T) / H(T)``,
    ``I(S;T) = H(S) + H(T) - H(S,T)``.  A zero entropy makes its ratio 1; Fiji returns 0 when both are zero.
    """
    pred, true = _pair("pred_labels", pred_labels, "true_labels", true_labels)
    nij, s, t = _contingency(pred, true)
    n = int(t.sum())
    hs, ht, hst = _entropy(s, n), _entropy(t, n), _entropy(nij, n)
    mi = min(max(hs + ht - hst, 0.0), hs, ht)
    split = mi / hs if hs > 0 else 1.0
    merge = mi / ht if ht > 0 else 1.0
    score = 2 * split * merge / (split + merge) if split + merge > 0 else 0.0
    return SegmentationScores(score, split, merge)


def snemi3d_adapted_rand_error(pred_labels, true_labels) -> tuple[float, float, float]:
    """Adapted Rand error of the SNEMI3D contest, with the semantics of ``skimage.metrics.adapted_rand_error``.

    Over the pixels with ``true_labels > 0`` (predicted label 0 is an ordinary segment here), with pairs of
    distinct pixels: ``precision = (sum n_ij^2 - n) / (sum s_i^2 - n)`` (pairs joined by the prediction that
    the truth joins), ``recall = (sum n_ij^2 - n) / (sum t_j^2 - n)``, ``error = 1 - 2 P R / (P + R)``.
    A ratio without pairs in its denominator is 1.  Returns ``(error, precision, recall)``.
    """
    pred, true = _pair("pred_labels", pred_labels, "true_labels", true_labels)
    nij, s, t = _contingency(pred, true, singletons=False)
    n = int(t.sum())
    sp, ss, st = int(nij @ nij) - n, int(s @ s) - n, int(t @ t) - n
    prec = sp / ss if ss > 0 else 1.0
    rec = sp / st if st > 0 else 1.0
    return 1.0 - _fiji_f(sp, ss - sp, st - sp), prec, rec


def pixel_fscore(pred_membrane, truth_membrane, *, positive: str = "cell") -> float:
    """F-score of the pixels of class ``positive`` (``"cell"``, as the ISBI 2012 Fiji code, or
    ``"membrane"``): ``2 tp / (2 tp + fp + fn)``, precision (recall) 1 when there is no fp (fn)."""
    check_choice("positive", positive, _POSITIVES)
    pred = _numeric("pred_membrane", pred_membrane)
    truth = _binary("truth_membrane", truth_membrane, "pred_membrane", pred)
    return _fiji_f(*_pixel_counts(_binary("pred_membrane", pred, "pred_membrane", pred), truth, positive))


def _pixel_counts(pred: np.ndarray, truth: np.ndarray, positive: str) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` of the pixels of class ``positive`` from the boolean membrane masks ``pred``, ``truth``."""
    if positive == "cell":
        pred, truth = ~pred, ~truth
    return int(np.sum(pred & truth)), int(np.sum(pred & ~truth)), int(np.sum(~pred & truth))


def isbi_scores(prob, truth_membrane, thresholds=ISBI_THRESHOLDS, *, pixel_positive: str = "cell") -> ISBIScores:
    """The official ISBI 2012 scores of a membrane-probability map, maximised over thresholds.

    Parameters
    ----------
    prob : array ``(H, W)`` or ``(N, H, W)``, values in [0, 1] (1 = membrane); a binary map works too
    truth_membrane : array of the same shape, 1 = membrane, 0 = cell interior
    thresholds : sequence of floats in [0, 1]; membrane where ``prob >= t``.  The default (0.0, ..., 1.0)
        is the official script's grid; its last cut (membrane where ``prob > 0``) is replaced by ``t = 0``
        (all membrane, one segment).
    pixel_positive : ``"cell"`` (the challenge's code) or ``"membrane"``: the positives of the pixel F-score

    Returns
    -------
    ISBIScores
        The curves over ``thresholds`` (module docstring) and their maxima, at the first threshold reaching them.
    """
    p = _probability("prob", prob)
    truth = _binary("truth_membrane", truth_membrane, "prob", p)
    check_choice("pixel_positive", pixel_positive, _POSITIVES)
    ts = _thresholds(thresholds)
    p, truth = (p, truth) if p.ndim == 3 else (p[None], truth[None])
    if (~truth).reshape(len(truth), -1).any(axis=1).min() == 0:
        raise UserInputError("truth_membrane must have cell (0) pixels in every slice, got a slice that is "
                             "all membrane")
    true_lab = [_components(~tr) for tr in truth]
    vr, vi, rf, pf = (np.zeros(ts.size) for _ in range(4))
    for k, t in enumerate(ts):
        rand_tp = rand_fp = rand_fn = tp = fp = fn = 0
        for sl, tr, tl in zip(p, truth, true_lab):
            membrane = sl >= t
            thinned = _watershed_thin(membrane)
            vr[k] += rand_scores(thinned, tl).score / len(p)
            vi[k] += info_scores(thinned, tl).score / len(p)
            sp, ss, st = _rand_counts(_components(~membrane), tl)
            rand_tp, rand_fp, rand_fn = rand_tp + sp, rand_fp + ss - sp, rand_fn + st - sp
            ptp, pfp, pfn = _pixel_counts(membrane, tr, pixel_positive)
            tp, fp, fn = tp + ptp, fp + pfp, fn + pfn
        rf[k], pf[k] = _fiji_f(rand_tp, rand_fp, rand_fn), _fiji_f(tp, fp, fn)
    for a in (ts, vr, vi, rf, pf):
        a.setflags(write=False)
    i, j = int(np.argmax(vr)), int(np.argmax(vi))
    return ISBIScores(ts, float(vr[i]), float(ts[i]), float(vi[j]), float(ts[j]), 1.0 - float(rf.max()),
                      1.0 - float(pf.max()), vr, vi, rf, pf)


def tune_threshold(prob, truth_membrane, thresholds=ISBI_THRESHOLDS) -> tuple[float, ISBIScores]:
    """The threshold with the largest mean ``V_rand`` over validation images (the first of ties), and the
    validation :class:`ISBIScores` (arguments as :func:`isbi_scores`)."""
    scores = isbi_scores(prob, truth_membrane, thresholds)
    return scores.v_rand_threshold, scores
