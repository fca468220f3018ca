"""label_error, confusion_matrix (flowlearn.evaluation), nearest_prototype_labels (flowlearn.data) against
independent references."""

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from flowlearn.data import nearest_prototype_labels
from flowlearn.evaluation import confusion_matrix, label_error


def test_label_error_counts_differing_pixels():
    truth = np.array([[0, 1, 2, 3], [1, 1, 1, 1]])
    pred = truth.copy()
    assert label_error(pred, truth) == 0.0
    pred[0, 0], pred[1, 3] = 5, 0
    assert label_error(pred, truth) == 25.0
    assert label_error(torch.as_tensor(pred), torch.as_tensor(truth)) == 25.0
    assert label_error(np.zeros((3, 3), int), np.ones((3, 3), int)) == 100.0


def test_label_error_errors():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(3, 2\)"):
        label_error(np.zeros((2, 3), int), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="non-empty"):
        label_error(np.zeros((0, 3), int), np.zeros((0, 3), int))
    with pytest.raises(ValueError, match="integer labels"):
        label_error(np.full((2, 2), 0.5), np.zeros((2, 2), int))


def test_confusion_matrix_matches_sklearn_and_label_error():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, size=(30, 40))
    pred = np.where(rng.random((30, 40)) < 0.7, truth, rng.integers(0, 5, size=(30, 40)))
    got = confusion_matrix(pred, truth, 5)
    np.testing.assert_array_equal(got, sk_confusion_matrix(truth.ravel(), pred.ravel(), labels=range(5)))
    assert got.dtype == np.int64 and got.sum() == truth.size
    assert np.isclose(100 * (1 - np.trace(got) / got.sum()), label_error(pred, truth), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"pred labels must lie in 0..3, got range \[0, 4\]"):
        confusion_matrix(pred, truth, 4)


def test_nearest_prototype_labels_matches_brute_force():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(70, 1000, 3))  # > one block of 65536 pixels
    protos = rng.normal(size=(6, 3))
    got = nearest_prototype_labels(image, protos)
    assert got.shape == (70, 1000) and got.dtype == np.int64
    dists = np.stack([np.linalg.norm(image - p, axis=-1) for p in protos], axis=-1)
    np.testing.assert_array_equal(got, dists.argmin(-1))
    np.testing.assert_array_equal(nearest_prototype_labels(torch.as_tensor(image), torch.as_tensor(protos)), got)


def test_nearest_prototype_ties_go_to_lowest_label_and_errors():
    protos = np.array([[0.0], [1.0], [1.0]])
    image = np.array([[[0.5], [0.9], [2.0]]])
    np.testing.assert_array_equal(nearest_prototype_labels(image, protos), [[0, 1, 1]])
    with pytest.raises(ValueError, match=r"C = 1 .*got shape \(1, 3, 2\)"):
        nearest_prototype_labels(np.zeros((1, 3, 2)), protos)
    with pytest.raises(ValueError, match=r"prototypes must have shape \(J, C\)"):
        nearest_prototype_labels(image, np.zeros(3))
    with pytest.raises(ValueError, match="image must be finite"):
        nearest_prototype_labels(np.full((1, 1, 1), np.nan), protos)
