"""GaussianFeatureBank against SciPy's Gaussian derivative filters, and the labeler built on it."""

import numpy as np
import pytest
import torch

from flowlearn._checks import UserInputError
from flowlearn.learning.features import GaussianFeatureBank

ndimage = pytest.importorskip("scipy.ndimage")


@pytest.mark.parametrize("sigma", [0.7, 1.0, 3.0])
def test_bank_equals_scipy(sigma):
    img = np.random.default_rng(0).random((40, 33))
    f = GaussianFeatureBank((sigma,))(torch.tensor(img)[..., None]).numpy()
    assert f.shape == (40, 33, 5)

    def g(order):
        return ndimage.gaussian_filter(img, sigma, order=order, mode="mirror", truncate=3.0)

    lx, ly, lxx, lyy, lxy = g((0, 1)), g((1, 0)), g((0, 2)), g((2, 0)), g((1, 1))
    half_tr, root = (lxx + lyy) / 2, np.sqrt(((lxx - lyy) / 2) ** 2 + lxy**2)
    refs = [img, g((0, 0)), sigma * np.hypot(lx, ly), sigma**2 * (half_tr + root), sigma**2 * (half_tr - root)]
    for k, ref in enumerate(refs):
        np.testing.assert_allclose(f[..., k], ref, rtol=0, atol=1e-12 * max(1.0, np.abs(ref).max()))


def test_bank_channels_dtype_and_small_images():
    bank = GaussianFeatureBank((1.0, 8.0))
    x = torch.rand(9, 11, 3, dtype=torch.float32)  # smaller than the sigma-8 kernel radius: replicate fallback
    out = bank(x)
    assert out.shape == (9, 11, bank.out_channels(3)) == (9, 11, 27)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out[..., :3], x)  # raw channels first
    const = bank(torch.full((20, 20, 1), 0.3, dtype=torch.float64))
    torch.testing.assert_close(const[..., 1], torch.full((20, 20), 0.3, dtype=torch.float64))  # smoothing keeps a constant
    assert float(const[..., 2].abs().max()) < 1e-12 and float(const[..., 6].abs().max()) < 1e-12   # no gradient
    # the truncated second-derivative kernel (as SciPy's) sums to almost 0: the sigma^2-scaled Hessian of a
    # constant is < 0.5 % of it at sigma 1 and < 3 % at sigma 8
    assert float(const[..., [3, 4]].abs().max()) < 0.005 * 0.3 and float(const[..., [7, 8]].abs().max()) < 0.03 * 0.3


def test_bank_bad_input():
    with pytest.raises(UserInputError, match="image must be a float tensor"):
        GaussianFeatureBank()(torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(UserInputError, match="sigmas"):
        GaussianFeatureBank(())
    with pytest.raises(UserInputError, match="sigmas entry"):
        GaussianFeatureBank((1.0, -2.0))


def test_labeler_filter_bank_warmup_and_resume(tmp_path):
    """Warm-up steps train the data term only; a resumed run (cosine step size) equals an uninterrupted one."""
    from flowlearn.learning.labeler import LabelerConfig, LabelerTrainer

    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(3, 24, 24, generator=g) > 0.7).long()
    images = (0.3 + 0.4 * labels + 0.1 * torch.randn(3, 24, 24, generator=g)).unsqueeze(-1)
    cfg = LabelerConfig(crop=16, batch=2, layers=2, iterations=8, pretrain_steps=4, final_lr_fraction=0.1,
                        scales=2, eval_every=2, checkpoint_every=1, checkpoint_seconds=0)
    trainer = LabelerTrainer(cfg, show_progress=False)
    model, res = trainer.fit(images, labels, [0, 1], [2])
    assert [h["validation_error"] is None for h in res.history[:4]] == [True] * 4   # no evaluation while warming up
    assert res.best["iteration"] >= 4
    assert model.bank is not None and float(model.bank_std.min()) > 0
    # warm-up leaves the predictors untouched
    fresh = trainer.build(images, labels, [0, 1])
    warm, _ = trainer.fit(images, labels, [0, 1], [2], stop_after=4, checkpoint=tmp_path / "w.pt")
    for p, q in zip(warm.predictors.parameters(), fresh.predictors.parameters()):
        torch.testing.assert_close(p, q)
    resumed, res2 = trainer.fit(images, labels, [0, 1], [2], checkpoint=tmp_path / "w.pt", resume=True)
    assert res2.stats["resumed_from"] == 4
    for (k, p), q in zip(resumed.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=k)


def test_class_balance_weights_and_weighted_loss():
    """Weights are frequency^(-class_balance); the weighted KL equals its formula; 0 is the plain loss."""
    from flowlearn.learning.deep import assignment_nll
    from flowlearn.learning.labeler import LabelerConfig, LabelerTrainer

    labels = torch.zeros(2, 10, 10, dtype=torch.long)
    labels[0, :2] = 1                       # image 0: 20 % label 1; image 1 (not trained on): all 0
    labels[1, :5] = 2
    w = LabelerTrainer(LabelerConfig(class_balance=1.0), show_progress=False).class_weights(labels, [0], 3)
    # frequencies 0.8, 0.2 and (absent) like the rarest present one
    torch.testing.assert_close(w, torch.tensor([1.0, 4.0, 4.0], dtype=torch.float32))
    w_half = LabelerTrainer(LabelerConfig(class_balance=0.5), show_progress=False).class_weights(labels, [0], 3)
    torch.testing.assert_close(w_half, torch.tensor([1.0, 2.0, 2.0], dtype=torch.float32))
    assert LabelerTrainer(LabelerConfig(class_balance=0.0), show_progress=False).class_weights(labels, [0], 3) is None

    logw = torch.log_softmax(torch.randn(7, 3, dtype=torch.float64), -1)
    y = torch.tensor([0, 1, 1, 2, 0, 0, 1])
    ww = torch.tensor([1.0, 4.0, 2.5], dtype=torch.float64)
    expect = -sum(ww[j] * logw[i, j] for i, j in enumerate(y.tolist())) / ww[y].sum()
    torch.testing.assert_close(assignment_nll(logw, y, ww), expect)
    torch.testing.assert_close(assignment_nll(logw, y, torch.ones(3)), assignment_nll(logw, y))
    torch.testing.assert_close(assignment_nll(logw, y, ww, reduction="sum"), expect * ww[y].sum())
    with pytest.raises(UserInputError, match="class_balance"):
        LabelerConfig(class_balance=-1.0)


def test_class_balance_changes_training_toward_the_rare_class():
    """With class_balance = 1 the trained data term predicts the rare class on more pixels."""
    from flowlearn.learning.labeler import LabelerConfig, LabelerTrainer

    g = torch.Generator().manual_seed(1)
    labels = (torch.rand(2, 24, 24, generator=g) > 0.85).long()
    images = (0.45 + 0.1 * labels + 0.15 * torch.randn(2, 24, 24, generator=g)).unsqueeze(-1)  # overlapping classes
    counts = []
    for balance in (0.0, 1.0):
        cfg = LabelerConfig(crop=16, layers=1, iterations=60, pretrain_steps=60, scales=1, eval_every=10,
                            checkpoint_every=10**6, checkpoint_seconds=0, class_balance=balance)
        model, _ = LabelerTrainer(cfg, show_progress=False).fit(images, labels, [0, 1])
        with torch.no_grad():
            d = model.data_term(model.inputs(images[0])[None])
        counts.append(int((d.argmin(1) == 1).sum()))
    assert counts[1] > counts[0] + 20
