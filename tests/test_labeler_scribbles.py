"""Sparse labels (scribbles): an ignore value in the label images; the loss counts labelled pixels only."""

import pytest
import torch

from flowlearn._checks import UserInputError
from flowlearn.learning.deep import assignment_nll
from flowlearn.learning.labeler import LabelerConfig, LabelerTrainer, pixel_error


def two_regions(n=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = torch.stack([((xx + 0.5 * yy + 4 * k) % size > size / 2).long() for k in range(n)])
    images = (0.3 + 0.4 * labels + 0.25 * torch.randn(n, size, size, generator=g)).unsqueeze(-1)
    return images, labels


def scribbles(labels, ignore=255, every=9):
    """Thin strokes: one row in ``every`` kept, the rest set to ``ignore``."""
    sparse = torch.full_like(labels, ignore)
    sparse[:, ::every] = labels[:, ::every]
    return sparse


def test_nll_counts_labelled_pixels_only():
    g = torch.Generator().manual_seed(1)
    logw = torch.log_softmax(torch.randn(2, 3, 5, 6, generator=g), 1)
    y = torch.randint(3, (2, 5, 6), generator=g)
    y[0, :2] = -100
    keep = y != -100
    by_hand = -logw.permute(0, 2, 3, 1)[keep].gather(1, y[keep].unsqueeze(1)).mean()
    assert torch.allclose(assignment_nll(logw, y), by_hand)
    w = torch.tensor([1.0, 2.0, 0.5])
    picked = -logw.permute(0, 2, 3, 1)[keep].gather(1, y[keep].unsqueeze(1)).squeeze(1)
    assert torch.allclose(assignment_nll(logw, y, w), (w[y[keep]] * picked).sum() / w[y[keep]].sum())


def test_training_from_scribbles_ignores_the_unlabelled_pixels():
    images, labels = two_regions()
    sparse = scribbles(labels)
    cfg = dict(crop=16, batch=2, layers=1, iterations=30, pretrain_steps=15, scales=2, eval_every=10,
               checkpoint_every=10**6, checkpoint_seconds=0)
    model, res = LabelerTrainer(LabelerConfig(ignore_label=255, **cfg), show_progress=False).fit(
        images, sparse, [0, 1], [2])
    assert model.num_labels == 2                                   # 255 is not a class
    assert res.best["validation_error"] < 10.0                     # scored on the labelled validation pixels
    assert pixel_error(model, images[2:], labels[2:]) < 10.0       # ... and on the full truth
    # the unlabelled pixels carry no information: another value there changes nothing
    other = sparse.clone()
    other[sparse == 255] = 7
    model2, _ = LabelerTrainer(LabelerConfig(ignore_label=7, **cfg), show_progress=False).fit(
        images, other, [0, 1], [2])
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k


def test_all_unlabelled_training_images_are_refused():
    images, labels = two_regions(n=2, size=16)
    with pytest.raises(UserInputError, match="no labelled pixel"):
        LabelerTrainer(LabelerConfig(ignore_label=0, crop=8, iterations=1), show_progress=False).fit(
            images, torch.zeros_like(labels), [0], [1])
    with pytest.raises(UserInputError, match="ignore_label"):
        LabelerConfig(ignore_label=-1)
