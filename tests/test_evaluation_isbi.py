"""The ISBI 2012 scores (V_rand, V_info after border thinning, Rand and pixel error), the SNEMI3D adapted Rand
error and the calibration error: hand-computed cases and second implementations written from the formulas."""

from __future__ import annotations

import math
import os
from collections import Counter, deque

import numpy as np
import pytest
from scipy import ndimage

from flowlearn._checks import UserInputError
from flowlearn.evaluation import (
    expected_calibration_error,
    isbi_scores,
    rand_scores,
    reliability_diagram,
    snemi3d_adapted_rand_error,
)
from flowlearn.evaluation.isbi import (
    info_scores,
    pixel_fscore,
    segments_from_probability,
)

SHARED_DATA = os.environ.get("FLOWLEARN_SHARED_DATA",
                             os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
TOL = 1e-12
FOUR = ndimage.generate_binary_structure(2, 1)


def cells(membrane):
    return ndimage.label(~np.asarray(membrane, bool), structure=FOUR)[0]


def grid(h=13, w=17, rows=(6,), cols=(4, 11)):
    g = np.zeros((h, w), bool)
    g[list(rows), :] = True
    g[:, list(cols)] = True
    return g


# ------------------------------------------------------------------- second implementations (the paper)
def brute_rand(pred, true):
    """V_rand, split, merge by enumerating all ordered pixel pairs of the true foreground (O(n^2)); a
    predicted 0 is a segment of its own, so it is joined only to itself."""
    fg = true.ravel() > 0
    t, s = true.ravel()[fg], pred.ravel()[fg]
    n = t.size
    same_t = t[:, None] == t[None, :]
    same_s = (s[:, None] == s[None, :]) & ((s[:, None] != 0) | np.eye(n, dtype=bool))
    both, pt, ps = int((same_t & same_s).sum()), int(same_t.sum()), int(same_s.sum())
    return 2 * both / (ps + pt), both / pt, both / ps


def brute_info(pred, true):
    """V_info, split, merge from an explicit joint histogram; I = sum p_ij log(p_ij / (p_i p_j))."""
    joint, fresh = Counter(), 0
    for s, t in zip(pred.ravel().tolist(), true.ravel().tolist()):
        if t == 0:
            continue
        if s == 0:
            fresh += 1
            s = ("singleton", fresh)
        joint[(s, t)] += 1
    n = sum(joint.values())
    ps, pt = Counter(), Counter()
    for (s, t), c in joint.items():
        ps[s] += c / n
        pt[t] += c / n
    hs = -sum(p * math.log(p) for p in ps.values())
    ht = -sum(p * math.log(p) for p in pt.values())
    mi = sum(c / n * math.log((c / n) / (ps[s] * pt[t])) for (s, t), c in joint.items())
    split, merge = mi / hs, mi / ht
    return 2 * split * merge / (split + merge), split, merge


def brute_snemi(pred, true):
    fg = true.ravel() > 0
    t, s = true.ravel()[fg], pred.ravel()[fg]
    off = ~np.eye(t.size, dtype=bool)
    same_t, same_s = (t[:, None] == t[None, :]) & off, (s[:, None] == s[None, :]) & off
    both = (same_t & same_s).sum()
    prec, rec = both / same_s.sum(), both / same_t.sum()
    return 1 - 2 * prec * rec / (prec + rec), prec, rec


def flooding(membrane):
    """The classic flooding watershed (Vincent & Soille) on the two-level image (cells 0, membrane 255), as
    the challenge's Fiji code runs it: pixels in (value, x, y) order, 4-neighbours left, up, right, down."""
    h, w = membrane.shape
    level = np.where(membrane, 255, 0)
    lab = {(x, y): -1 for x in range(w) for y in range(h)}
    order = sorted(lab, key=lambda xy: (level[xy[1], xy[0]], xy[0], xy[1]))

    def nbrs(x, y):
        return [(u, v) for u, v in ((x - 1, y), (x, y - 1), (x + 1, y), (x, y + 1)) if 0 <= u < w and 0 <= v < h]

    current = 0
    for value in sorted(set(level.ravel().tolist())):
        todo = [xy for xy in order if level[xy[1], xy[0]] == value]
        queue = deque()
        for xy in todo:
            lab[xy] = -2
            if any(lab[q] >= 0 for q in nbrs(*xy)):
                lab[xy] = -3
                queue.append(xy)
        flag = False
        while queue:
            p = queue.popleft()
            for q in nbrs(*p):
                if lab[q] > 0:
                    if lab[p] == -3 or (lab[p] == 0 and flag):
                        lab[p] = lab[q]
                    elif lab[p] > 0 and lab[p] != lab[q]:
                        lab[p], flag = 0, False
                elif lab[q] == 0 and lab[p] == -3:
                    lab[p], flag = 0, True
                elif lab[q] == -2:
                    lab[q] = -3
                    queue.append(q)
        for xy in todo:
            if lab[xy] == -2:
                current += 1
                lab[xy], stack = current, [xy]
                while stack:
                    for q in nbrs(*stack.pop()):
                        if lab[q] == -2:
                            lab[q] = current
                            stack.append(q)
    out = np.zeros((h, w), np.int64)
    for (x, y), v in lab.items():
        out[y, x] = max(v, 0)
    return out


def same_partition(a, b):
    """Equal up to a renaming of the labels, with 0 kept as 0."""
    return a.shape == b.shape and np.array_equal(a == 0, b == 0) and len(set(zip(a.ravel(), b.ravel()))) == \
        len(np.unique(a)) == len(np.unique(b))


# ------------------------------------------------------------------------------------- hand cases
def test_perfect_prediction_scores_one():
    truth = grid()
    r = isbi_scores(truth.astype(float), truth)
    assert r.v_rand == 1.0 and r.v_info == 1.0 and r.rand_error == 0.0 and r.pixel_error == 0.0
    assert r.v_rand_threshold == 0.1 and r.v_rand_curve[0] < 1   # t = 0: all membrane, one segment
    assert (rand_scores(cells(truth), cells(truth)).score, info_scores(cells(truth), cells(truth)).score) == (1.0, 1.0)


def test_one_pixel_gap_merges_two_cells():
    truth = np.zeros((3, 8), bool)
    truth[:, [2, 5]] = True                  # cells A (cols 0-1), B (3-4), C (6-7): 6 pixels each, n = 18
    prob = truth.astype(float)
    prob[1, 2] = 0.0                         # a gap: A and B become one predicted segment
    seg = segments_from_probability(prob, 0.5)
    assert seg[0, 2] == seg[1, 2] == seg[2, 2] == seg[0, 0] == seg[0, 3] != seg[0, 6]
    # contingency counts on the true foreground: (AB, A) = 6, (AB, B) = 6, (C, C) = 6
    sum_p2, sum_t2, sum_s2 = 3 * 6**2, 3 * 6**2, 12**2 + 6**2
    expected = sum_p2 / (0.5 * sum_s2 + 0.5 * sum_t2)
    assert expected == 0.75
    r = rand_scores(seg, cells(truth))
    assert abs(r.score - expected) < TOL and abs(r.split - 1.0) < TOL and abs(r.merge - 108 / 180) < TOL
    hs = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))        # I(S;T) = H(S): T refines S
    merge = hs / math.log(3)
    i = info_scores(seg, cells(truth))
    assert abs(i.split - 1) < TOL and abs(i.merge - merge) < TOL and abs(i.score - 2 * merge / (1 + merge)) < TOL
    full = isbi_scores(prob, truth, thresholds=[0.5])
    assert abs(full.v_rand - 0.75) < TOL and abs(full.v_info - i.score) < TOL
    # unthinned (2012 Rand error): the 4 membrane pixels of the prediction are not on the true foreground
    assert abs(full.rand_error - 0.25) < TOL
    # pixel error, cells positive: tp = 18, fp = 1 (the gap), fn = 0
    assert abs(full.pixel_error - (1 - 36 / 37)) < TOL


def test_thick_borders_are_thinned_to_the_thin_ones():
    truth = grid()
    thick = ndimage.binary_dilation(truth, structure=np.ones((3, 3)))   # 3-pixel-wide borders
    thinned = segments_from_probability(thick.astype(float), 0.5)
    assert same_partition(thinned, cells(truth))
    r = isbi_scores(thick.astype(float), truth, thresholds=[0.5])
    assert r.v_rand == 1.0 and r.v_info == 1.0
    assert r.rand_error > 0.3 and r.pixel_error > 0.2          # the 2012 scores do see the thick borders
    unthinned = rand_scores(segments_from_probability(thick.astype(float), 0.5, thin=False), cells(truth))
    assert unthinned.merge == 1.0 and unthinned.split < 0.5


def test_two_pixel_border_keeps_its_second_column_as_the_dam():
    membrane = np.zeros((4, 7), bool)
    membrane[:, 3:5] = True
    thinned = segments_from_probability(membrane.astype(float), 0.5)
    assert (thinned[:, 4] == 0).all() and (thinned[:, 3] == thinned[:, 0]).all() and (thinned[:, :4] > 0).all()


def test_a_probability_equal_to_the_threshold_is_membrane():
    prob = np.zeros((3, 5))
    prob[:, 2] = 0.5                          # Fiji: cell where 1 - prob > th, i.e. membrane where prob >= t
    assert (segments_from_probability(prob, 0.5)[:, 2] == 0).all()
    assert (segments_from_probability(prob, np.nextafter(0.5, 1)) == 1).all()


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_no_membrane_and_all_membrane_are_one_giant_segment(value):
    truth = grid()
    seg = segments_from_probability(np.full(truth.shape, value), 0.5)
    assert (seg == 1).all()
    t = np.bincount(cells(truth).ravel())[1:]
    n = t.sum()
    r = rand_scores(seg, cells(truth))
    assert abs(r.merge - (t @ t) / n**2) < TOL and r.split == 1.0
    assert abs(r.score - 2 * (t @ t) / (n**2 + t @ t)) < TOL
    i = info_scores(seg, cells(truth))
    assert i.score == 0.0 and i.merge == 0.0 and i.split == 1.0
    assert isbi_scores(np.full(truth.shape, value), truth).v_rand == r.score


def test_stacks_average_v_rand_per_slice_and_pool_the_2012_counts():
    rng = np.random.default_rng(3)
    truth = np.stack([grid(), grid(rows=(3, 9), cols=(8,))])
    prob = np.clip(truth + rng.normal(0, 0.35, truth.shape), 0, 1)
    ts = [0.3, 0.5, 0.7]
    both = isbi_scores(prob, truth, thresholds=ts)
    one = [isbi_scores(prob[k], truth[k], thresholds=ts) for k in range(2)]
    assert np.allclose(both.v_rand_curve, (one[0].v_rand_curve + one[1].v_rand_curve) / 2, rtol=0, atol=TOL)
    assert np.allclose(both.v_info_curve, (one[0].v_info_curve + one[1].v_info_curve) / 2, rtol=0, atol=TOL)
    k = int(np.argmax(both.v_rand_curve))
    assert both.v_rand == both.v_rand_curve.max() and both.v_rand_threshold == ts[k]
    for t, f in zip(ts, both.pixel_f_curve):
        pred_cell, true_cell = prob < t, ~truth
        tp, fp, fn = (pred_cell & true_cell).sum(), (pred_cell & ~true_cell).sum(), (~pred_cell & true_cell).sum()
        assert abs(f - 2 * tp / (2 * tp + fp + fn)) < TOL
    assert abs(both.pixel_error - (1 - both.pixel_f_curve.max())) < TOL
    with pytest.raises(ValueError):
        both.v_rand_curve[0] = 0.0


def test_v_rand_and_v_info_pick_their_own_thresholds():
    truth = np.zeros((3, 33), bool)
    truth[:, 20::2] = True                    # a big cell (cols 0-19), then six 1-pixel-wide cells
    prob = truth * 0.5
    prob[:, 20] = 1.0
    prob[:, 10] = 0.5                         # t = 0.48: the big cell is halved; t = 0.52: the small ones merge
    r = isbi_scores(prob, truth, thresholds=[0.48, 0.52])
    assert r.v_rand_threshold == 0.52 and r.v_info_threshold == 0.48   # V_rand forgives merging small cells
    assert r.v_rand == r.v_rand_curve[1] > r.v_rand_curve[0] and r.v_info == r.v_info_curve[0] > r.v_info_curve[1]
    for k, t in enumerate((0.48, 0.52)):
        seg = segments_from_probability(prob, t)
        assert abs(r.v_rand_curve[k] - brute_rand(seg, cells(truth))[0]) < TOL
        assert abs(r.v_info_curve[k] - brute_info(seg, cells(truth))[0]) < TOL


# ------------------------------------------------------------- agreement with the second implementations
@pytest.mark.parametrize("seed", range(6))
def test_rand_and_info_agree_with_pair_counting_and_joint_histograms(seed):
    rng = np.random.default_rng(seed)
    shape = (7, 9) if seed % 2 else (4, 5, 3)
    true = rng.integers(0, 5, shape)
    pred = rng.integers(0, 4 + seed, shape)
    r, i = rand_scores(pred, true), info_scores(pred, true)
    assert np.allclose((r.score, r.split, r.merge), brute_rand(pred, true), rtol=0, atol=TOL)
    assert np.allclose((i.score, i.split, i.merge), brute_info(pred, true), rtol=0, atol=TOL)
    assert np.allclose(snemi3d_adapted_rand_error(pred, true), brute_snemi(pred, true), rtol=0, atol=TOL)


@pytest.mark.parametrize("seed", range(5))
def test_thinning_is_the_flooding_watershed_of_the_challenge(seed):
    rng = np.random.default_rng(10 + seed)
    prob = ndimage.gaussian_filter(rng.random((14, 11)), 1.0)
    membrane = prob >= np.quantile(prob, (0.45, 0.55, 0.65, 0.75, 0.8)[seed])   # thin to thick borders
    ours = segments_from_probability(membrane.astype(float), 0.5)
    assert same_partition(ours, flooding(membrane))
    basins = cells(membrane)
    assert same_partition(np.where(basins > 0, ours, 0), basins)   # the cells are kept, dams lie on membrane


def test_snemi3d_adapted_rand_error_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 5, (20, 20)), rng.integers(0, 6, (20, 20))
    assert abs(snemi3d_adapted_rand_error(pred, true)[0] - metrics.adapted_rand_error(true, pred)[0]) < TOL


def test_pixel_fscore_either_class():
    truth = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 0, 0, 1]])
    assert pixel_fscore(pred, truth, positive="membrane") == 0.5 and pixel_fscore(pred, truth) == 0.5
    assert pixel_fscore(np.array([[0, 0, 0, 1]]), truth) == 2 * 1 / (2 * 1 + 2 + 1)   # cells: tp 1, fp 2, fn 1


# ----------------------------------------------------------------------------------------- calibration
def test_ece_hand_cases():
    truth = np.array([1, 0] * 50)
    assert abs(expected_calibration_error(np.full(100, 0.9), truth) - 0.4) < TOL
    prob = np.array([0.25] * 4 + [0.75] * 4)
    calibrated = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(prob, calibrated) == 0.0
    # two bins: |0.5 - 0.25| on 4 of 8 pixels, |0.25 - 0.75| on the other 4
    off = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    assert abs(expected_calibration_error(prob, off) - (0.5 * 0.25 + 0.5 * 0.5)) < TOL
    assert abs(expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1]), bins=1) - 0.0) < TOL


def test_reliability_diagram_bins_and_png(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    prob = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    truth = np.array([0, 1, 0, 1, 1])
    out = reliability_diagram(prob, truth, bins=10, path=tmp_path / "rel.png", title="membranes")
    assert out.counts.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2] and len(out.edges) == 11
    assert np.isnan(out.frequency[2]) and abs(out.confidence[9] - 0.975) < TOL and out.frequency[1] == 0.5
    assert abs(out.ece - expected_calibration_error(prob, truth)) < TOL
    assert (tmp_path / "rel.png").stat().st_size > 0 and matplotlib.get_backend() == backend


# ---------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("call, match", [
    (lambda: isbi_scores(np.zeros((4, 4)), np.zeros((4, 5))), r"truth_membrane must have the shape of prob"),
    (lambda: isbi_scores(np.full((4, 4), 1.5), np.zeros((4, 4))), r"prob must hold probabilities in \[0, 1\]"),
    (lambda: isbi_scores(np.zeros((4, 4)), np.full((4, 4), 2)), r"truth_membrane must be binary.*\[2\]"),
    (lambda: isbi_scores(np.zeros((4, 4)), np.ones((4, 4))), r"truth_membrane must have cell"),
    (lambda: isbi_scores(np.zeros((4, 4)), np.zeros((4, 4)), thresholds=[1.2]), r"thresholds must be"),
    (lambda: isbi_scores(np.zeros(4), np.zeros(4)), r"prob must be a non-empty 2-D or 3-D array"),
    (lambda: segments_from_probability(np.zeros((3, 3)), [0.2, 0.4]), r"threshold must be one number in \[0, 1\]"),
    (lambda: segments_from_probability(np.zeros((3, 3)), -1), r"threshold must be one number"),
    (lambda: isbi_scores(np.zeros((4, 4)), np.zeros((4, 4)), pixel_positive="edge"), r"pixel_positive must be"),
    (lambda: rand_scores(np.zeros((2, 2)), -np.ones((2, 2))), r"true_labels must hold non-negative labels"),
    (lambda: rand_scores(np.zeros((2, 2)), np.zeros((2, 3))), r"pred_labels must have the shape of true_labels"),
    (lambda: info_scores(np.full((2, 2), 0.5), np.ones((2, 2))), r"pred_labels must hold integer labels"),
    (lambda: expected_calibration_error(np.zeros(3), np.zeros(4)), r"truth must have the shape of prob"),
    (lambda: expected_calibration_error(np.array([0.1, -0.2]), np.zeros(2)), r"prob must hold probabilities"),
    (lambda: expected_calibration_error(np.zeros(2), np.array([0, 3])), r"truth must be binary"),
    (lambda: expected_calibration_error(np.zeros(2), np.zeros(2), bins=0), r"bins must be >= 1"),
])
def test_bad_input_is_a_one_line_error_naming_the_argument(call, match):
    with pytest.raises(UserInputError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------ real ISBI data
def test_isbi_ground_truth_against_itself_and_an_eroded_copy():
    path = os.path.join(SHARED_DATA, "isbi2012_membranes.npz")
    if not os.path.exists(path):
        pytest.skip(f"{path} not available")
    truth = np.load(path)["labels"][:2].astype(bool)
    same = isbi_scores(truth.astype(float), truth, thresholds=[0.5])
    assert (same.v_rand, same.v_info, same.rand_error, same.pixel_error) == (1.0, 1.0, 0.0, 0.0)
    eroded = np.stack([ndimage.binary_dilation(t, structure=FOUR) for t in truth])   # cells eroded by 1 px
    r = isbi_scores(eroded.astype(float), truth, thresholds=[0.5])
    assert 0.99 < r.v_rand < 1.0 and 0.99 < r.v_info < 1.0
    assert r.rand_error > 10 * (1 - r.v_rand)          # without thinning the thicker borders cost much more
