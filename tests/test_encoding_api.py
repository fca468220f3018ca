"""Issue 12 items 5-6: user decoders, the conv decoder, callable losses, the encoder as a layer."""

import pytest
import torch
from torch import nn

from flowlearn.encoding import BCE, GradientFlowEncoder, MSE, TrainConfig, Trainer, load_dataset
from flowlearn.encoding.data import ImageData, mnist5k_path
from flowlearn.encoding.losses import GaussianNLL, Masked
from flowlearn.encoding.models import ConvDecoder
from flowlearn.solvers.bb import BB

pytestmark = pytest.mark.usefixtures("one_thread")


class ResidualDecoder(nn.Module):
    """A user decoder: not an nn.Sequential, a skip connection, a (B, 1, H, W) output."""

    def __init__(self, latent, side):
        super().__init__()
        self.side = side
        self.inp = nn.Linear(latent, 32)
        self.hidden = nn.Linear(32, 32)
        self.out = nn.Linear(32, side * side)

    def forward(self, z):
        h = torch.tanh(self.inp(z))
        h = h + torch.tanh(self.hidden(h))
        return torch.sigmoid(self.out(h)).reshape(-1, 1, self.side, self.side)


def _synthetic(side, n_train=24, n_val=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
    c = torch.rand(n_train + n_val, 2, generator=g) - 0.5
    r = 0.2 + 0.4 * torch.rand(n_train + n_val, generator=g)
    imgs = torch.sigmoid(8 * (r[:, None, None] - ((xx - c[:, 0, None, None]) ** 2
                                                   + (yy - c[:, 1, None, None]) ** 2).sqrt()))
    flat = imgs.reshape(len(imgs), -1).double()
    labels = torch.zeros(len(flat), dtype=torch.long)
    return ImageData(flat[:n_train], labels[:n_train], flat[n_train:], labels[n_train:], (side, side),
                     f"blobs{side}")


def _data28():
    if mnist5k_path() is not None:
        d = load_dataset("mnist5k", val_size=8, dtype=torch.float64)
        return ImageData(d.train[:24], d.train_labels[:24], d.val, d.val_labels, d.image_shape, d.name)
    return _synthetic(28)


@pytest.mark.parametrize("side, factory", [
    (28, lambda P, d, dtype: ResidualDecoder(d, 28)),
    (28, lambda P, d, dtype: ConvDecoder(d, 28, width=8, dtype=dtype)),
    (64, lambda P, d, dtype: ResidualDecoder(d, 64)),
    (64, lambda P, d, dtype: ConvDecoder(d, 64, width=4, dtype=dtype)),
], ids=["user-28", "conv-28", "user-64", "conv-64"])
def test_trainer_trains_user_and_conv_decoders(side, factory):
    data = _data28() if side == 28 else _synthetic(64)
    cfg = TrainConfig(model="gfe", solver="bb", latent_dim=4, batch_size=8, images=24, eval_every=100, lr=1e-3)
    trainer = Trainer(cfg, decoder_factory=factory)
    init = {k: v.clone() for k, v in trainer.build(data.data_dim, dtype=torch.float64).state_dict().items()}
    res = trainer.fit(data)
    assert res.stats["images_seen"] == 24 and res.stats["steps"] == 3
    assert 0 < res.val_bce < 1 and res.val_loss == res.val_bce
    state = res.module.state_dict()
    assert state.keys() == init.keys() and any(not torch.equal(state[k], init[k]) for k in init)
    ae = Trainer(TrainConfig(model="ae", latent_dim=4, batch_size=8, images=16), decoder_factory=factory).fit(data)
    assert ae.mixed_val_bce is not None and 0 < ae.val_bce < 1


def test_encoder_is_a_layer_in_user_code():
    data = _synthetic(28)
    dec = ConvDecoder(3, 28, width=4)
    gfe = GradientFlowEncoder(dec, 3, solver=BB(max_steps=30), adjoint="full")
    opt = torch.optim.Adam(dec.parameters(), lr=1e-3)
    y = data.train[:8]
    losses = []
    for _ in range(3):
        opt.zero_grad()
        z = gfe(y)
        assert z.requires_grad and z.shape == (8, 3)
        loss = BCE()(dec(z), y).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(p.grad is not None for p in dec.parameters())
    with torch.no_grad():
        assert not gfe(y).requires_grad


def _grads(enc, y):
    enc.decoder.zero_grad()
    z = enc(y)
    enc.loss_fn(enc.decoder(z), y).mean().backward()
    return torch.cat([p.grad.flatten() for p in enc.decoder.parameters()])


@pytest.mark.parametrize("case", [dict(solver="euler", grid="linear", steps=10, t1=6.0), dict(solver="amd"),
                                  dict(solver="bb")], ids=["euler", "amd", "bb"])
def test_full_adjoint_equals_unrolled_through_forward(case):
    torch.manual_seed(1)
    dec = ResidualDecoder(3, 4)
    y = torch.rand(5, 16)
    g_full = _grads(GradientFlowEncoder(dec, 3, adjoint="full", **case), y)
    g_unrolled = _grads(GradientFlowEncoder(dec, 3, adjoint="unrolled", **case), y)
    assert torch.allclose(g_full, g_unrolled, rtol=1e-9, atol=1e-12)
    g_approx = _grads(GradientFlowEncoder(dec, 3, adjoint="approx", **case), y)
    assert not torch.allclose(g_full, g_approx, rtol=1e-6)
    if case["solver"] == "euler":    # theta -> z* is smooth on a fixed grid: central differences (gradcheck-style)
        enc = GradientFlowEncoder(dec, 3, adjoint="full", **case)
        params = list(dec.parameters())
        flat = torch.nn.utils.parameters_to_vector(params).detach()
        for i in torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:6].tolist():
            vals = []
            for sign in (1, -1):
                v = flat.clone()
                v[i] += sign * 1e-6
                torch.nn.utils.vector_to_parameters(v, params)
                with torch.no_grad():
                    vals.append(float(enc.loss_fn(dec(enc(y)), y).mean()))
            torch.nn.utils.vector_to_parameters(flat, params)
            assert abs((vals[0] - vals[1]) / 2e-6 - float(g_full[i])) < 1e-6 + 1e-5 * abs(float(g_full[i]))


def test_callable_losses_and_strings():
    torch.manual_seed(0)
    x, y = torch.rand(3, 10), torch.rand(3, 10)
    assert torch.allclose(BCE()(x, y), torch.nn.functional.binary_cross_entropy(x, y, reduction="none").mean(1))
    assert torch.allclose(MSE()(x, y), ((x - y) ** 2).mean(1))
    nll = GaussianNLL(0.5)(x, y)
    ref = -torch.distributions.Normal(x, 0.5).log_prob(y).mean(1)
    assert torch.allclose(nll, ref)
    mask = torch.zeros(10)
    mask[:4] = 1
    assert torch.allclose(Masked("mse", mask)(x, y), ((x - y)[:, :4] ** 2).mean(1))
    dec = ResidualDecoder(2, 4)
    yy = torch.rand(4, 16)
    for loss in ("bce", "mse", "gaussian", MSE(), Masked(BCE(), torch.arange(16) % 2),
                 lambda r, t: (r.reshape(len(t), -1) - t).abs().mean(1)):
        enc = GradientFlowEncoder(dec, 2, loss=loss, solver="bb")
        res = enc.encode(yy)
        assert res.loss.shape == (4,) and bool(torch.isfinite(res.loss).all())
        enc.training_loss(yy).loss.backward()
    with pytest.raises(ValueError, match="loss must be one of"):
        GradientFlowEncoder(dec, 2, loss="l1")
    with pytest.raises(TypeError, match="loss must be a name or a callable"):
        GradientFlowEncoder(dec, 2, loss=3)
    # a Gaussian loss accepts data outside [0, 1]; BCE refuses it
    GradientFlowEncoder(dec, 2, loss=GaussianNLL(1.0), solver="bb").encode(yy * 3 - 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GradientFlowEncoder(dec, 2).encode(yy * 3 - 1)


def test_trainer_with_mse_loss_records_val_loss():
    data = _synthetic(8, n_train=16, n_val=8)
    res = Trainer(TrainConfig(latent_dim=2, batch_size=8, images=16, eval_every=1, solver="bb"), loss="mse").fit(data)
    assert all("val_loss" in h and "val_bce" not in h for h in res.history) and len(res.history) == 2
    assert res.val_loss > 0 and res.val_bce != res.val_bce    # NaN: the loss is not BCE
    with pytest.raises(TypeError, match="decoder_factory must return a torch.nn.Module"):
        Trainer(TrainConfig(), decoder_factory=lambda P, d, dt: "x").build(16)


def test_encode_from_a_given_start_never_worse():
    torch.manual_seed(0)
    dec = ResidualDecoder(3, 4)
    y = torch.rand(6, 16)
    z0 = torch.randn(6, 3)
    enc = GradientFlowEncoder(dec, 3)
    with torch.no_grad():
        start = BCE()(dec(z0), y)
    assert bool((enc.encode(y, z0=z0).loss <= start).all())
    with pytest.raises(ValueError, match=r"z0 must be a tensor of shape \(6, 3\)"):
        enc.encode(y, z0=torch.zeros(6, 2))


def test_conv_decoder_shapes_and_bad_sizes():
    assert ConvDecoder(5, 28)(torch.zeros(2, 5)).shape == (2, 784)
    assert ConvDecoder(5, 64, channels=3, flatten=False)(torch.zeros(2, 5)).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="image_size"):
        ConvDecoder(5, 30)
