"""load_prototypes, kmeans_prototypes, class_mean_prototypes."""

import numpy as np
import pytest
import torch

from flowlearn.data import class_mean_prototypes, kmeans_prototypes, load_prototypes


# ----------------------------------------------------------------------------- load_prototypes
@pytest.mark.parametrize(
    "text",
    [
        "0 0 0\n1 0.5 0.25\n0 1 1\n",
        "# three RGB labels\n0, 0, 0\n1, 0.5, 0.25   # orange-ish\n\n0,1,1\n",
        "0\t0 0\n1 0.5\t0.25\n0 1 1",
    ],
)
def test_load_text_whitespace_or_commas(tmp_path, text):
    path = tmp_path / "protos.txt"
    path.write_text(text)
    got = load_prototypes(path, channels=3)
    np.testing.assert_array_equal(got, [[0, 0, 0], [1, 0.5, 0.25], [0, 1, 1]])
    assert got.dtype == np.float64


def test_load_text_one_value_per_line_is_one_channel(tmp_path):
    path = tmp_path / "grey.csv"
    path.write_text("0.0\n0.5\n1.0\n")
    np.testing.assert_array_equal(load_prototypes(path), [[0.0], [0.5], [1.0]])


def test_load_npy_two_and_one_dimensional(tmp_path):
    protos = np.random.default_rng(0).random((5, 3))
    np.save(tmp_path / "p.npy", protos)
    np.testing.assert_array_equal(load_prototypes(tmp_path / "p.npy"), protos)
    np.save(tmp_path / "g.npy", np.array([0.0, 1.0], dtype=np.float32))
    got = load_prototypes(tmp_path / "g.npy", channels=1)
    assert got.shape == (2, 1) and got.dtype == np.float64


@pytest.mark.parametrize(
    "name,content,kwargs,error,match",
    [
        ("a.txt", "0 0 0\n1 1 1\n", dict(channels=1), ValueError, r"must have 1 channels.*got shape \(2, 3\)"),
        ("b.txt", "0 0 0\n", {}, ValueError, "at least 2 rows"),
        ("c.txt", "0 nan\n1 1\n", {}, ValueError, "must be finite"),
        ("d.txt", "0 0\n1 1 1\n", {}, ValueError, "cannot parse prototypes file .*d.txt"),
        ("e.txt", "red green\nblue yellow\n", {}, ValueError, "cannot parse prototypes file .*e.txt"),
        ("f.npy", np.zeros((2, 2, 2)), {}, ValueError, r"f.npy.*got shape \(2, 2, 2\)"),
        ("g.npy", np.array([1.0, np.inf]), {}, ValueError, "g.npy.*must be finite"),
        ("h.npy", np.array([0.5]), {}, ValueError, "h.npy.*at least 2 rows"),
        ("i.npy", "plain text", {}, ValueError, "i.npy.*not a NumPy .npy file"),
        ("j.txt", "0\n1\n", dict(channels=0), ValueError, "channels must be >= 1"),
    ],
)
def test_load_errors(tmp_path, name, content, kwargs, error, match):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    with pytest.raises(error, match=match):
        load_prototypes(path, **kwargs)


def test_load_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt.*does not exist"):
        load_prototypes(tmp_path / "missing.txt")


# ----------------------------------------------------------------------------- class means
def test_class_means_exact_on_constructed_image():
    protos = np.array([[0.25, 0.5], [1.0, -2.0], [0.125, 3.0]])  # dyadic: sums and means are exact
    labels = np.array([[0, 0, 1, 1], [2, 0, 1, 2], [2, 2, 2, 0]])
    offsets = np.zeros((3, 4, 2))
    offsets[0, 0], offsets[0, 1] = [0.5, 0.25], [-0.5, -0.25]  # zero-mean perturbation inside class 0
    image = protos[labels] + offsets
    got = class_mean_prototypes(image, labels)
    np.testing.assert_array_equal(got, protos)
    np.testing.assert_array_equal(class_mean_prototypes(torch.as_tensor(image), torch.as_tensor(labels)), protos)


def test_class_means_match_loop_reference():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(20, 30, 3))
    labels = rng.integers(0, 6, size=(20, 30))
    got = class_mean_prototypes(image, labels, num_labels=6)
    expected = np.stack([image[labels == j].mean(axis=0) for j in range(6)])
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


def test_class_means_errors():
    image = np.zeros((3, 4, 2))
    labels = np.array([[0, 1, 1, 0]] * 3)
    with pytest.raises(ValueError, match=r"labels must have shape \(3, 4\).*got shape \(4, 3\)"):
        class_mean_prototypes(image, labels.T)
    with pytest.raises(ValueError, match="labels must be >= 0, got minimum -1"):
        class_mean_prototypes(image, labels - 1)
    with pytest.raises(ValueError, match=r"no(ne)? .*label\(s\) \[2\]"):
        class_mean_prototypes(image, labels, num_labels=3)
    with pytest.raises(ValueError, match="labels must be < num_labels = 1, got maximum 1"):
        class_mean_prototypes(image, labels, num_labels=1)
    with pytest.raises(TypeError, match="labels must be an integer array"):
        class_mean_prototypes(image, labels.astype(float))


# ----------------------------------------------------------------------------- k-means
def test_kmeans_recovers_well_separated_clusters():
    rng = np.random.default_rng(2)
    centres = np.array([[0.1, 0.1, 0.9], [0.9, 0.2, 0.1], [0.5, 0.9, 0.5], [0.0, 0.0, 0.0]])
    labels = rng.integers(0, 4, size=(40, 50))
    image = centres[labels] + 0.02 * rng.normal(size=(40, 50, 3))
    got = kmeans_prototypes(image, 4, seed=0)
    expected = centres[np.lexsort(centres.T[::-1])]  # documented order: lexicographic
    np.testing.assert_allclose(got, expected, atol=0.01)
    # deterministic for a seed, and the torch / (N, C) inputs give the same centres
    np.testing.assert_array_equal(kmeans_prototypes(image, 4, seed=0), got)
    np.testing.assert_allclose(kmeans_prototypes(torch.as_tensor(image.reshape(-1, 3)), 4, seed=0), got,
                               rtol=0, atol=1e-12)


def test_kmeans_errors():
    image = np.random.default_rng(3).random((3, 3, 2))
    with pytest.raises(ValueError, match="k must be >= 2, got 1"):
        kmeans_prototypes(image, 1)
    with pytest.raises(ValueError, match=r"k must be <= the number of pixels \(9\), got 10"):
        kmeans_prototypes(image, 10)
    with pytest.raises(ValueError, match=r"distinct pixel values \(1\), got 2"):
        kmeans_prototypes(np.ones((3, 3, 2)), 2)
    with pytest.raises(ValueError, match="must be finite"):
        kmeans_prototypes(np.full((3, 3, 1), np.nan), 2)
    with pytest.raises(ValueError, match=r"shape \(H, W, C\) or \(N, C\)"):
        kmeans_prototypes(np.zeros(9), 2)
