"""align_labels: Hungarian matching of class-mean colours (dataset canonicalisation)."""

import numpy as np
import pytest

from flowlearn.data.alignment import align_labels


def test_align_labels_recovers_a_known_permutation():
    rng = np.random.default_rng(0)
    colours = rng.random((4, 3))
    labels0 = rng.integers(0, 4, (10, 12))
    perm = np.array([2, 0, 3, 1])                      # image 1 numbers class j as perm[j]
    labels1 = perm[labels0]
    img0 = colours[labels0] + 0.01 * rng.standard_normal((10, 12, 3))
    img1 = colours[labels0] + 0.01 * rng.standard_normal((10, 12, 3))
    res = align_labels(np.stack([img0, img1]), np.stack([labels0, labels1]))
    assert np.array_equal(res.labels[0], labels0)
    assert np.array_equal(res.labels[1], labels0)
    assert np.array_equal(res.permutations[1][perm], np.arange(4))
    assert np.allclose(res.class_means[0], res.class_means[1], atol=0.05)


def test_align_labels_on_facades(facades_path):
    from flowlearn.data import load_facades

    d = load_facades(facades_path)
    res = align_labels(d.images, d.labels)
    bright = res.class_means.mean(-1)
    raw = np.array([[d.images[n][d.labels[n] == j].mean() for j in range(9)] for n in range(3)])
    assert np.abs(raw[2] - raw[0]).max() > 0.5           # inconsistent ids in the shipped file
    assert np.abs(bright[2] - bright[0]).max() < 0.15    # brightness profiles agree after alignment
    assert np.abs(d.images[2][d.labels[2] == 5].mean() - d.images[0][d.labels[0] == 2].mean()) < 0.1


def test_align_labels_errors():
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W, C\)"):
        align_labels(np.zeros((2, 3, 3)), np.zeros((2, 3, 3), dtype=int))
    with pytest.raises(ValueError, match="labels must have shape"):
        align_labels(np.zeros((2, 3, 3, 1)), np.zeros((2, 3, 4), dtype=int))
    with pytest.raises(ValueError, match="reference must be an image index"):
        align_labels(np.zeros((2, 3, 3, 1)), np.zeros((2, 3, 3), dtype=int), reference=5)
