"""load_facades on the real file (skipped when absent) and on malformed archives."""

import numpy as np
import pytest

from flowlearn.data import class_mean_prototypes, load_facades, nearest_prototype_labels
from flowlearn.data.alignment import FacadesData
from flowlearn.evaluation import confusion_matrix, label_error


def test_real_facades_file(facades_path):
    data = load_facades(facades_path)
    assert isinstance(data, FacadesData)
    assert data.images.shape == (3, 456, 620, 3) and data.images.dtype == np.float64
    assert data.labels.shape == (3, 456, 620) and data.labels.dtype == np.int64
    assert data.num_labels == 9 and data.num_images == 3
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert set(np.unique(data.labels[0])) == set(range(9))
    # protocol of the report: class means of image 0 as prototypes, rounding of image 2
    protos = class_mean_prototypes(data.images[0], data.labels[0], num_labels=data.num_labels)
    pred = nearest_prototype_labels(data.images[2], protos)
    err = label_error(pred, data.labels[2])
    cm = confusion_matrix(pred, data.labels[2], data.num_labels)
    assert 0 < err < 100
    assert np.isclose(err, 100 * (1 - np.trace(cm) / cm.sum()))
    # the class means are the least-squares optimum: moving any prototype increases the
    # within-class squared error on image 0
    def sq(p):
        return sum(((data.images[0][data.labels[0] == j] - p[j]) ** 2).sum() for j in range(9))

    assert sq(protos) < sq(protos + 1e-3)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "arrays,match",
    [
        (dict(images=np.zeros((1, 4, 4, 3)), l=np.zeros((1, 4, 4), int)), r"lacks key\(s\) \['f'\]"),
        (dict(f=np.zeros((1, 4, 4, 3))), r"lacks key\(s\) \['l'\]"),
        (dict(f=np.zeros((4, 4, 3)), l=np.zeros((1, 4, 4), int)), r"shape \(N, H, W, 3\), got shape \(4, 4, 3\)"),
        (dict(f=np.zeros((1, 4, 4, 1)), l=np.zeros((1, 4, 4), int)), r"\(N, H, W, 3\)"),
        (dict(f=np.zeros((2, 4, 4, 3)), l=np.zeros((1, 4, 4), int)),
         r"must have shape \(2, 4, 4\).*got shape \(1, 4, 4\)"),
        (dict(f=np.zeros((1, 4, 4, 3)), l=np.zeros((1, 4, 4))), "labels 'l'.*must be integers"),
        (dict(f=np.full((1, 4, 4, 3), np.nan), l=np.zeros((1, 4, 4), int)), "must be finite"),
        (dict(f=np.zeros((1, 4, 4, 3)), l=-np.ones((1, 4, 4), int)), "must be >= 0"),
    ],
)
def test_malformed_npz(tmp_path, arrays, match):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_facades(path)


def test_not_an_npz_and_missing(tmp_path):
    (tmp_path / "x.npz").write_text("not a zip archive")
    with pytest.raises(ValueError, match="x.npz.*not an .npz"):
        load_facades(tmp_path / "x.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single.npy.*not an .npz"):
        load_facades(tmp_path / "single.npy")
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_facades(tmp_path / "absent.npz")


def test_valid_small_archive(tmp_path):
    images = np.random.default_rng(0).random((2, 5, 6, 3)).astype(np.float32)
    labels = np.arange(60).reshape(2, 5, 6) % 4
    data = load_facades(_npz(tmp_path / "ok.npz", f=images, l=labels.astype(np.int32)))
    np.testing.assert_array_equal(data.images, images.astype(np.float64))
    np.testing.assert_array_equal(data.labels, labels)
    assert data.num_labels == 4
