"""benchmarks/segmentation.py: the seeded scribbles, the deep flow's step plan for a wall-time budget, the scores
of graph cuts' labelings and the printed table."""

from pathlib import Path

import numpy as np
import pytest

from benchmarks import segmentation as bench
from benchmarks.scribbles import IGNORE, scribbles
from flowlearn.evaluation import isbi_scores

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "isbi2012_membranes.npz"


def _cells(size=128, step=24, width=3):
    """A grid of ``step`` x ``2 step`` cells separated by ``width``-pixel membranes (1)."""
    y = np.zeros((size, size), np.int64)
    for k in range(0, size, step):
        y[k:k + width] = 1
    for k in range(0, size, 2 * step):
        y[:, k:k + width] = 1
    return y


@pytest.mark.parametrize("width", [1, 2])
def test_scribbles_are_about_one_percent_and_carry_true_labels(width):
    pytest.importorskip("skimage")
    truth = np.stack([_cells(), np.roll(_cells(), 7, axis=(0, 1))])
    s = scribbles(truth, 0.01, seed=3, width=width)
    assert s.shape == truth.shape and set(np.unique(s)) == {0, 1, IGNORE}
    labelled = s != IGNORE
    assert np.array_equal(s[labelled], truth[labelled])                   # every scribble pixel is right
    for k in range(2):
        frac = labelled[k].mean()
        assert 0.008 <= frac <= 0.013, frac
        assert 0.35 <= np.mean(s[k][labelled[k]] == 1) <= 0.65             # about half membrane, half cell
    assert np.array_equal(s, scribbles(truth, 0.01, seed=3, width=width))  # seeded
    assert not np.array_equal(s, scribbles(truth, 0.01, seed=4, width=width))
    assert np.array_equal(scribbles(truth[0], 0.01, seed=3, width=width), s[0])   # one image = first of a stack


def test_scribbles_keep_off_the_membranes_inside_cells():
    pytest.importorskip("skimage")
    from scipy import ndimage

    truth = _cells()
    s = scribbles(truth, 0.02, seed=0, erode=4)
    near = ndimage.binary_dilation(truth == 1, iterations=4)              # within 4 pixels of a membrane
    assert not np.any((s == 0) & near)


def test_scribbles_on_isbi():
    pytest.importorskip("skimage")
    if not DATA.exists():
        pytest.skip("isbi2012_membranes.npz not found")
    truth = np.load(DATA)["labels"][:2].astype(np.int64)
    s = scribbles(truth, seed=0)
    assert 0.009 <= np.mean(s != IGNORE) <= 0.012
    assert np.array_equal(s[s != IGNORE], truth[s != IGNORE])


def test_flow_step_plan_fits_the_budget_with_the_recipe_ratio():
    setup, warm, flow, ev = 20.0, 0.005, 0.16, 6.0
    pre, steps = bench.plan_flow_steps(240.0, setup, warm, flow, ev)
    assert pre == round(steps / 2)                                         # 1000 : 2000
    used = setup + 11 * ev + pre * warm + steps * flow
    assert 240.0 - flow - warm <= used <= 240.0
    assert bench.plan_flow_steps(1.0, setup, warm, flow, ev) == (5, 10)   # a budget too small: the minimum


def test_scores_of_labelings_match_isbi_scores_per_operating_point():
    truth = np.stack([_cells(64, 16), _cells(64, 20)])
    noisy = truth.copy()
    noisy[:, 20:23, :] = 0                                                 # a cut membrane merges cells
    maps = {0.3: truth, 0.6: noisy}
    sc = bench.scores_of_labelings(maps.__getitem__, truth, thresholds=(0.3, 0.6))
    assert sc.v_rand == 1.0 and sc.v_rand_threshold == 0.3
    ref = isbi_scores(noisy, truth, (0.5,))
    assert sc.v_rand_curve[1] == pytest.approx(ref.v_rand) and sc.v_info_curve[1] == pytest.approx(ref.v_info)
    row = bench.score_row(sc, sc, 0.6)
    assert row["v_rand"] == pytest.approx(ref.v_rand) and row["v_rand_max"] == 1.0 and row["threshold"] == 0.6


def test_table_prints_nan_as_not_available():
    row = {"v_rand": 0.9, "v_info": 0.95, "threshold": 0.5, "v_rand_max": 0.91, "v_info_max": 0.96,
           "rand_error": 0.1, "one_minus_max_f": 0.08, "pixel_error": 9.5, "ece": float("nan"), "parameters": 3,
           "train_seconds": 0.2, "steps": None}
    text = bench.format_table({"dense": {"graph cuts": row}})
    assert "graph cuts" in text and text.count("n/a") == 2 and "0.9000" in text
