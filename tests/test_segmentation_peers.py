"""The peers and the evaluation rule of benchmarks/segmentation.py: exact Potts MAP by min cut against
enumeration, the random forest and the BasicUNet trainers on sparse labels (``benchmarks.segmentation_peers``),
and the threshold selection by V_rand (``flowlearn.evaluation.tune_threshold``)."""

import itertools

import numpy as np
import pytest
import torch

from benchmarks import segmentation_peers as peers
from flowlearn.evaluation import isbi_scores, tune_threshold


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


def _two_cells():
    truth = np.zeros((20, 20), np.int64)
    truth[:, 10] = 1                                    # two cells split by a one-pixel membrane
    return truth


def test_tune_threshold_picks_the_largest_v_rand():
    truth = _two_cells()
    prob = np.where(truth == 1, 0.35, 0.1)              # the membrane is seen below t = 0.35 ...
    prob[5, 10] = 0.25                                  # ... with a gap above t = 0.25: the cells merge
    t, scores = tune_threshold(prob, truth, thresholds=(0.2, 0.3, 0.5))
    assert t == 0.2 and scores.v_rand == 1.0 and scores.v_rand_threshold == 0.2
    # merged: one predicted segment over the true cells of 200 and 180 pixels, V_rand = 2 sum n_ij^2 / (s^2 + t^2)
    merged = 2 * (200**2 + 180**2) / (380**2 + 200**2 + 180**2)
    assert scores.v_rand_curve[1] == pytest.approx(merged) and scores.v_rand_curve[2] == pytest.approx(merged)
    # the default grid is the challenge's, and the first of tied thresholds wins
    t0, s0 = tune_threshold(prob, truth)
    assert len(s0.thresholds) == 11 and t0 == 0.2 and s0.v_rand == 1.0   # 0.1: all membrane


def test_tune_threshold_on_a_stack_uses_one_threshold():
    truth = np.stack([_two_cells(), _two_cells()])
    prob = np.where(truth == 1, 0.75, 0.1)
    prob[1] = np.where(truth[1] == 1, 0.45, 0.1)        # the second image sees its membrane only below 0.45
    t, scores = tune_threshold(prob, truth, thresholds=(0.4, 0.7))
    assert t == 0.4 and scores.v_rand == 1.0
    assert scores.v_rand_curve[1] == pytest.approx(isbi_scores(prob, truth, (0.4, 0.7)).v_rand_curve[1])


def test_unet_class_weights_follow_the_flow_rule():
    from flowlearn.learning.labeler import LabelerConfig, LabelerTrainer

    y = torch.zeros(3, 8, 8, dtype=torch.long)
    y[:, :2] = 1
    y[2] = 255                                                          # an unlabelled image
    w = peers.class_weights(y, [0, 1, 2], 0.5, ignore=255)
    flow = LabelerTrainer(LabelerConfig(class_balance=0.5, ignore_label=255)).class_weights(
        torch.where(y == 255, -100, y), [0, 1, 2], 2)
    assert torch.allclose(w, flow) and w[1] > w[0] == 1
    assert peers.class_weights(y, [0], 0.0) is None


@pytest.mark.parametrize("head", [None, 4])
def test_train_unet_on_scribbles(head):
    pytest.importorskip("monai")
    g = torch.Generator().manual_seed(0)
    y = torch.zeros(3, 48, 48, dtype=torch.long)
    y[:, :, 22:26] = 1
    x = 0.3 + 0.4 * y.float() + 0.05 * torch.randn(3, 48, 48, generator=g)
    sparse = torch.full_like(y, 255)
    sparse[:, ::5] = y[:, ::5]
    net, _, steps, best = peers.train_unet(x, sparse, [0, 1], (x[2:], sparse[2:]), 1.5, head_features=head,
                                           crop=32, ignore=255, evals=2, log=lambda s: None)
    assert steps >= 1 and best["step"] >= 1 and 0 <= best["validation_error"] <= 100
    p = peers.unet_score(net, x[2].numpy())
    assert p.shape == (48, 48) and p.min() >= 0 and p.max() <= 1
    logp = net(x[:1, None].float())
    assert torch.allclose(logp.exp().sum(1), torch.ones_like(logp[:, 0]), atol=1e-4)


def test_forest_on_scribbles_uses_labelled_pixels_only():
    pytest.importorskip("skimage")
    rng = np.random.default_rng(0)
    y = np.zeros((2, 32, 32), np.int64)
    y[:, :, 14:18] = 1
    x = 0.3 + 0.4 * y + 0.05 * rng.normal(size=y.shape)
    sparse = np.full_like(y, 255)
    sparse[:, ::4] = y[:, ::4]
    rf, _, nodes = peers.train_rf(x, sparse, [0, 1], ignore=255)
    assert list(rf.classes_) == [0, 1] and nodes > 0                   # 255 never reached the forest
    assert np.mean((peers.rf_score(rf, x[1]) > 0.5) != y[1]) < 0.05
