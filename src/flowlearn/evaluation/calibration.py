"""Calibration of a probability map against a binary truth: expected calibration error and reliability bins.

With ``B`` equal-width bins of [0, 1] (bin ``b`` holds the pixels with ``b/B <= p < (b+1)/B``; ``p = 1``
falls in the last bin), ``n_b`` pixels in bin ``b`` out of ``n``, ``conf_b`` their mean predicted probability
and ``freq_b`` the fraction of them whose truth is 1:

    ``ECE = sum_b (n_b / n) |freq_b - conf_b|``

(Naeini, Cooper & Hauskrecht, "Obtaining well calibrated probabilities using Bayesian binning", AAAI 2015;
Guo et al., "On calibration of modern neural networks", ICML 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import check_int
from .isbi import _binary, _probability

__all__ = ["ReliabilityBins", "expected_calibration_error", "reliability_diagram"]


@dataclass(frozen=True)
class ReliabilityBins:
    """The bins of :func:`reliability_diagram`: ``edges`` ``(B + 1,)``, ``counts`` ``(B,)`` pixels per bin,
    ``confidence``/``frequency`` ``(B,)`` mean predicted probability / observed fraction of positives per bin
    (NaN for an empty bin), ``ece`` the expected calibration error."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    frequency: np.ndarray
    ece: float


def _bins(prob, truth, bins) -> ReliabilityBins:
    bins = check_int("bins", bins, minimum=1)
    p = _probability("prob", prob, ndims=None)
    p, y = p.ravel(), _binary("truth", truth, "prob", p).astype(np.float64).ravel()
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=p, minlength=bins) / counts
        freq = np.bincount(idx, weights=y, minlength=bins) / counts
    full = counts > 0
    ece = float(np.sum(counts[full] * np.abs(freq[full] - conf[full])) / p.size)
    out = ReliabilityBins(np.linspace(0.0, 1.0, bins + 1), counts, conf, freq, ece)
    for a in (out.edges, out.counts, out.confidence, out.frequency):
        a.setflags(write=False)
    return out


def expected_calibration_error(prob, truth, bins: int = 10) -> float:
    """Expected calibration error ``sum_b (n_b / n) |freq_b - conf_b|`` of ``prob`` (probability of class 1,
    any shape) against the binary ``truth`` of the same shape, with ``bins`` equal-width bins of [0, 1]."""
    return _bins(prob, truth, bins).ece


def reliability_diagram(prob, truth, bins: int = 10, *, path=None,
                        title: str = "Reliability diagram") -> ReliabilityBins:
    """The bins of a reliability diagram (``prob``, ``truth``, ``bins`` as :func:`expected_calibration_error`),
    and the diagram as a PNG at ``path`` if one is given: observed frequency per bin (bars), mean confidence
    against it and the diagonal of perfect calibration, titled ``title`` and the ECE."""
    out = _bins(prob, truth, bins)
    if path is not None:
        import matplotlib.pyplot as plt

        from ..io import save_figure

        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        centers, width = (out.edges[:-1] + out.edges[1:]) / 2, 1.0 / len(out.counts)
        full = out.counts > 0
        ax.bar(centers[full], out.frequency[full], width=width, edgecolor="black", alpha=0.6,
               label="observed frequency")
        ax.plot(out.confidence[full], out.frequency[full], "o-", color="C3", label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", label="perfectly calibrated")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability", ylabel="fraction of positives",
               title=f"{title} (ECE = {out.ece:.3f})")
        ax.legend(loc="upper left")
        save_figure(path, fig)
    return out
