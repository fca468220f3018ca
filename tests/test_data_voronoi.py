"""Random Voronoi images (flowlearn.data.voronoi): ground truth, geometry, noise, validation."""

import time

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import norm

from flowlearn.data import VoronoiImage, make_voronoi, nearest_prototype_labels
from flowlearn.data.voronoi import DEFAULT_NOISE, default_num_cells

SCENARIOS = ["boundary", "colors"]


def _pairs(a):
    """All 4-adjacent pixel pairs (horizontal and vertical) of a 2-D array, as two flat arrays."""
    return (np.concatenate([a[:, :-1].ravel(), a[:-1, :].ravel()]),
            np.concatenate([a[:, 1:].ravel(), a[1:, :].ravel()]))


@pytest.mark.parametrize("scenario,channels,num_labels", [("boundary", 1, 2), ("colors", 3, 8)])
def test_shapes_dtypes_and_clean_equals_prototypes_of_labels(scenario, channels, num_labels):
    v = make_voronoi((40, 56), scenario, seed=3)
    assert isinstance(v, VoronoiImage)
    assert v.image.shape == v.clean.shape == (40, 56, channels)
    assert v.image.dtype == v.clean.dtype == v.prototypes.dtype == np.float64
    assert v.labels.shape == v.cells.shape == (40, 56) and v.labels.dtype == np.int64
    assert v.prototypes.shape == (num_labels, channels) and v.num_labels == num_labels
    assert v.labels.min() >= 0 and v.labels.max() < num_labels
    np.testing.assert_array_equal(v.clean, v.prototypes[v.labels])  # exact
    assert len({tuple(p) for p in v.prototypes}) == num_labels  # distinct label values
    assert v.scenario == scenario and v.seed == 3 and v.noise == DEFAULT_NOISE[scenario]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_reproducible_from_seed(scenario):
    a, b = make_voronoi(48, scenario, seed=11), make_voronoi(48, scenario, seed=11)
    c = make_voronoi(48, scenario, seed=12)
    for name in ("image", "clean", "labels", "prototypes", "cells", "sites"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.stats == b.stats
    assert not np.array_equal(a.cells, c.cells)
    assert not np.array_equal(a.labels, c.labels)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_noise_is_additive_unclipped_and_scales_one_fixed_field(scenario):
    low, high, zero = (make_voronoi(64, scenario, noise=s, seed=5) for s in (0.2, 0.7, 0.0))
    np.testing.assert_array_equal(low.labels, high.labels)
    np.testing.assert_array_equal(low.clean, high.clean)
    np.testing.assert_array_equal(zero.image, zero.clean)
    np.testing.assert_allclose((low.image - low.clean) / 0.2, (high.image - high.clean) / 0.7, rtol=0, atol=1e-12)
    assert high.image.min() < -0.5 and high.image.max() > 1.5  # not clipped to [0, 1]


@pytest.mark.parametrize("noise", [0.1, 0.45, 1.3])
def test_measured_noise_std_matches_requested(noise):
    v = make_voronoi(256, "colors", noise=noise, seed=2)
    residual = v.image - v.clean  # 196608 samples: std of the std estimate ~ 0.16 %
    assert abs(residual.std() / noise - 1) < 0.01
    assert abs(residual.mean()) < 5 * noise / np.sqrt(residual.size)


def test_cells_are_nearest_sites_by_brute_force():
    v = make_voronoi((33, 47), "colors", seed=9, num_cells=13)
    rows, cols = np.mgrid[0:33, 0:47]
    d2 = (rows[..., None] - v.sites[:, 0]) ** 2 + (cols[..., None] - v.sites[:, 1]) ** 2
    np.testing.assert_array_equal(v.cells, d2.argmin(-1))
    assert v.sites.shape == (13, 2) and v.num_cells == 13


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("size", [64, (90, 130)])
def test_boundary_separates_cells_with_thin_connected_lines(seed, size):
    v = make_voronoi(size, "boundary", seed=seed)
    boundary = v.labels == 0
    np.testing.assert_array_equal(v.prototypes, [[0.0], [1.0]])
    # separation: no two 4-neighbouring interior pixels belong to different cells
    (ia, ib), (ca, cb) = _pairs(~boundary), _pairs(v.cells)
    assert not np.any(ia & ib & (ca != cb))
    # every boundary pixel is needed: it touches another cell through a 4-neighbour
    touches = np.zeros_like(boundary)
    diff_h, diff_v = v.cells[:, :-1] != v.cells[:, 1:], v.cells[:-1, :] != v.cells[1:, :]
    touches[:, :-1] |= diff_h
    touches[:, 1:] |= diff_h
    touches[:-1, :] |= diff_v
    touches[1:, :] |= diff_v
    assert np.all(touches[boundary])
    # thin: 2x2 blocks of boundary pixels only occur near junctions (far fewer than cells)
    blocks = boundary[:-1, :-1] & boundary[1:, :-1] & boundary[:-1, 1:] & boundary[1:, 1:]
    assert blocks.sum() <= v.num_cells
    # thin: a boundary is much smaller than a 2-pixel-wide band around all cell edges
    assert boundary.sum() < 0.75 * touches.sum()
    # connected-ish: one 8-connected component holds (nearly) all boundary pixels
    components, count = ndimage.label(boundary, structure=np.ones((3, 3)))
    assert count >= 1 and np.bincount(components.ravel())[1:].max() >= 0.98 * boundary.sum()


@pytest.mark.parametrize("seed", range(5))
def test_colors_constant_per_cell_and_neighbours_differ(seed):
    v = make_voronoi(128, "colors", seed=seed)
    # one label per cell
    for cell in np.unique(v.cells):
        assert np.unique(v.labels[v.cells == cell]).size == 1
    (la, lb), (ca, cb) = _pairs(v.labels), _pairs(v.cells)
    touching = ca != cb
    assert np.all(la[touching] != lb[touching])
    assert v.stats["num_label_conflicts"] == 0
    assert np.unique(v.labels).size >= 6  # the 8 colours are actually used


def test_default_num_cells():
    assert default_num_cells(128, 128) == 32
    assert default_num_cells(8, 8) == 4
    assert make_voronoi(128, "boundary").num_cells == 32
    assert make_voronoi(16, "colors", num_cells=2).num_cells == 2


@pytest.mark.parametrize("scenario,noise", [("boundary", None), ("boundary", 0.3), ("colors", None), ("colors", 0.4)])
def test_rounding_error_matches_closed_form(scenario, noise):
    """Prototypes on unit-cube corners: rounding thresholds each channel at 0.5 independently."""
    v = make_voronoi(256, scenario, noise=noise, seed=1)
    sigma = v.noise
    channels = v.prototypes.shape[1]
    expected = 100 * (1 - norm.cdf(0.5 / sigma) ** channels)
    measured = 100 * np.mean(nearest_prototype_labels(v.image, v.prototypes) != v.labels)
    assert abs(measured - expected) < 1.0  # binomial sd <= 0.2 percentage points
    if scenario == "colors" and noise is None:
        assert 45 < measured < 55  # paper: "about 50 % wrongly labeled pixels"
    if scenario == "boundary" and noise is None:
        assert 5 < measured < 50  # clearly imperfect


def test_large_image_is_fast():
    start = time.perf_counter()
    v = make_voronoi(512, "colors", seed=0)
    elapsed = time.perf_counter() - start
    assert v.image.shape == (512, 512, 3)
    assert elapsed < 3.0  # typically ~0.15 s; generous for a loaded CI machine


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(size=7), ValueError, "size must be >= 8, got 7"),
        (dict(size=(8, 5)), ValueError, r"size\[1\] \(width\) must be >= 8, got 5"),
        (dict(size=(8, 8, 8)), ValueError, "pair"),
        (dict(size=12.5), TypeError, "size must be an int"),
        (dict(size=16, scenario="colours"), ValueError,
         r"scenario must be one of \['boundary', 'colors'\], got 'colours'"),
        (dict(size=16, noise=-0.1), ValueError, "noise must be finite and >= 0, got -0.1"),
        (dict(size=16, noise=float("nan")), ValueError, "noise must be finite"),
        (dict(size=16, noise=float("inf")), ValueError, "noise must be finite"),
        (dict(size=16, num_cells=1), ValueError, "num_cells must be >= 2, got 1"),
        (dict(size=16, seed=-1), ValueError, "seed must be >= 0, got -1"),
        (dict(size=8, num_cells=65), ValueError, "num_cells must be <= 64, got 65"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_voronoi(**kwargs)
