"""The peers and the evaluation rule of benchmarks/segmentation.py: exact Potts MAP by min cut against
enumeration (``benchmarks.segmentation_peers``), the threshold semantics and the operating-point selection
(``flowlearn.evaluation``)."""

import itertools

import numpy as np
import pytest

from benchmarks import segmentation_peers as peers
from flowlearn.evaluation import tune_threshold
from flowlearn.evaluation.segmentation import threshold_labels


def _potts_energy(x, D, lam, bias):
    e = sum(D[i, j, x[i, j]] + bias * x[i, j] for i in range(x.shape[0]) for j in range(x.shape[1]))
    return e + lam * (np.sum(x[1:] != x[:-1]) + np.sum(x[:, 1:] != x[:, :-1]))


@pytest.mark.parametrize("t", [0.5, 0.2, 0.8])
def test_graph_cut_is_the_exact_potts_map(t):
    pytest.importorskip("maxflow")
    rng = np.random.default_rng(3)
    D = rng.uniform(0, 2, size=(3, 4, 2))
    lam, bias = 0.4, np.log(t / (1 - t))
    x = peers.graph_cut(D, lam, t)
    energies = [_potts_energy(np.array(z).reshape(3, 4), D, lam, bias) for z in itertools.product((0, 1), repeat=12)]
    assert _potts_energy(x, D, lam, bias) == pytest.approx(min(energies), abs=1e-9)


def test_graph_cut_bias_moves_the_decision_monotonically():
    pytest.importorskip("maxflow")
    D = np.random.default_rng(0).uniform(0, 1, size=(16, 16, 2))
    counts = [int(peers.graph_cut(D, 0.1, t).sum()) for t in (0.2, 0.5, 0.8)]
    assert counts[0] >= counts[1] >= counts[2] and counts[0] > counts[2]   # a cheaper membrane label: more of it


def test_threshold_at_half_is_the_argmax():
    p = np.random.default_rng(1).uniform(size=(8, 8))
    assert np.array_equal(threshold_labels(p, 0.5), np.argmax(np.stack([1 - p, p], -1), -1))


def test_tune_picks_the_least_rand_error_and_metrics_are_right():
    pytest.importorskip("skimage")
    truth = np.zeros((20, 20), np.int64)
    truth[:, 10] = 1                                    # two cells split by a one-pixel membrane
    score = np.where(truth == 1, 0.3, 0.1)              # the membrane is seen only below t = 0.3
    score[5, 10] = 0.25                                 # ... and has a weaker pixel: a gap above t = 0.25
    t, table = tune_threshold(threshold_labels, [score], [truth], thresholds=(0.2, 0.5))
    assert t == 0.2
    assert table[0.2]["rand_error"] == pytest.approx(0.0, abs=1e-12)
    assert table[0.2]["pixel_error"] == 0.0 and table[0.2]["f1"] == 1.0
    # at 0.5 no membrane: one predicted cell against the true cells of 200 and 180 pixels (the membrane
    # pixels are ignored in the truth); Rand pairs without self-pairs: recall 1,
    # precision (200^2 + 180^2 - 380) / (380^2 - 380)
    m = table[0.5]
    assert m["f1"] == 0.0 and m["pixel_error"] == pytest.approx(100 * 20 / 400)
    precision = (200**2 + 180**2 - 380) / (380**2 - 380)
    assert m["rand_error"] == pytest.approx(1 - 2 * precision / (precision + 1), abs=1e-9)
