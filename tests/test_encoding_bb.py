"""Barzilai-Borwein solver with nonmonotone Armijo safeguard (issue 12, item 4): correctness and cost vs AMD."""

import math

import pytest
import torch
from torch import nn

from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.encoding import GradientFlowEncoder, load_dataset, make_decoder
from flowlearn.encoding.flows import reconstruction_loss
from flowlearn.encoding.models import make_encoder
from flowlearn.solvers import BB
from flowlearn.solvers.amd import AMD, AMDStatus

pytestmark = pytest.mark.usefixtures("one_thread")


def _quadratic(B=6, d=4, seed=0, cond=30.0):
    g = torch.Generator().manual_seed(seed)
    A = torch.exp(torch.rand(B, d, generator=g) * math.log(cond)) * 0.1   # diagonal Hessians, per sample
    a = torch.randn(B, d, generator=g)

    def loss(z, rows=None):
        AA, aa = (A, a) if rows is None else (A[rows], a[rows])
        return 0.5 * (AA * (z - aa) ** 2).sum(1)
    return A, a, loss


def _decoder_problem(B=9, seed=1):
    torch.manual_seed(seed)
    dec = nn.Sequential(nn.Linear(3, 16), nn.ELU(), nn.Linear(16, 20), nn.Sigmoid())
    y = torch.rand(B, 20)
    y[4] = 1.0 - y[4] ** 8                                   # a harder sample

    def loss(z, rows):
        return nn.functional.binary_cross_entropy(dec(z), y[rows], reduction="none").mean(1)
    return dec, y, loss


@pytest.mark.parametrize("variant", ["bb1", "bb2", "alternate"])
@pytest.mark.parametrize("memory", [1, 5])
def test_converges_to_closed_form_minimiser(variant, memory):
    _, a, loss = _quadratic()
    res = BB(variant=variant, memory=memory, max_steps=500, flat_rtol=0.0, gtol=1e-11).minimize(
        loss, torch.zeros_like(a))
    assert torch.allclose(res.z, a, atol=1e-9)
    assert all(s in (AMDStatus.CONVERGED, AMDStatus.STALLED) for s in res.status)
    amd = AMD(max_steps=5000, flat_rtol=0.0, gtol=1e-11).minimize(loss, torch.zeros_like(a))
    assert int(res.grad_evals.sum()) < int((amd.grad_evals + amd.loss_evals).sum()) / 4


def test_quadratic_interpolation_backtrack_is_exact_on_a_parabola():
    # l = h/2 (z - 1)^2, first trial a = s0 = 1 overshoots (h = 4); the parabola through l(0), l'(0), l(1)
    # is l itself, so the interpolated step 1/h lands on the minimiser: 2 trials, one step
    h = 4.0
    res = BB(s0=1.0, max_steps=1, flat_rtol=0.0).minimize(lambda z: 0.5 * h * ((z - 1) ** 2).sum(1),
                                                          torch.zeros(1, 1))
    assert torch.allclose(res.z, torch.ones(1, 1), atol=1e-14)
    assert int(res.grad_evals[0]) == 3                       # start + rejected trial + accepted trial
    assert torch.allclose(res.step_sizes[0], torch.tensor([1.0 / h]))


def test_bb_step_on_a_quadratic():
    # after an accepted step s with y = A s, the next trial is s.y / y.y (bb2) or s.s / s.y (bb1)
    A, a, loss = _quadratic(B=3)
    for variant in ("bb1", "bb2"):
        res = BB(variant=variant, s0=0.5, memory=1, c1=0.0, max_steps=2, flat_rtol=0.0).minimize(
            loss, torch.zeros_like(a), record_states=True)
        s = res.states[1] - res.states[0]
        y = A * s
        expected = ((s * y).sum(1) / (y * y).sum(1)) if variant == "bb2" else ((s * s).sum(1) / (s * y).sum(1))
        z1 = res.states[1]
        accepted_first = loss(z1 - expected[:, None] * A * (z1 - a)) <= loss(z1)
        assert bool(accepted_first.all())
        assert torch.allclose(res.step_sizes[1], expected, rtol=1e-12)


def test_monotone_mode_strictly_decreases_and_nonmonotone_is_safeguarded():
    _, _, loss = _decoder_problem()
    z0 = torch.randn(9, 3) * 2
    mono = BB(memory=1, max_steps=60).minimize(loss, z0, indexed=True)
    for b in range(9):
        col = mono.loss_history[:, b][~torch.isnan(mono.loss_history[:, b])]
        assert bool((col[1:] < col[:-1]).all())
    nonmono = BB(memory=5, variant="bb1", max_steps=60).minimize(loss, z0, indexed=True)
    h = nonmono.loss_history
    for res in (mono, nonmono):
        assert torch.allclose(loss(res.z, torch.arange(9)), res.loss, rtol=1e-12)   # loss is that of z
        assert bool((res.loss <= h[0]).all())
    for b in range(9):
        col = h[:, b][~torch.isnan(h[:, b])]
        assert torch.allclose(nonmono.loss[b], col.min())                         # best iterate returned
        ref = torch.stack([col[max(0, k - 4):k + 1].max() for k in range(len(col))])
        assert bool((ref[1:] <= ref[:-1]).all())                                  # GLL reference never rises
        assert bool((col[1:] < ref[:-1]).all())                                   # each step beats it


def test_step_sizes_and_states_replay_to_the_returned_code():
    A, a, loss = _quadratic()
    res = BB(memory=5, variant="bb1", max_steps=30).minimize(loss, torch.zeros_like(a), record_states=True)
    z = torch.zeros_like(a)
    for n in range(res.step_sizes.shape[0]):
        z = z - res.step_sizes[n][:, None] * (A * (z - a))
        assert torch.allclose(z, res.states[n + 1], rtol=1e-12, atol=1e-14)
    assert torch.allclose(z, res.z, rtol=1e-12, atol=1e-14)
    assert torch.allclose(res.time, res.step_sizes.sum(0))


def test_each_sample_alone_equals_batch():
    _, _, loss = _decoder_problem(B=7)
    bb = BB(max_steps=80)
    batch = bb.minimize(loss, torch.zeros(7, 3), indexed=True)
    assert len(set(batch.steps.tolist())) > 1               # samples really stop at different times
    for b in range(7):
        alone = bb.minimize(lambda z, rows, b=b: loss(z, rows + b), torch.zeros(1, 3), indexed=True)
        assert torch.allclose(alone.z[0], batch.z[b], rtol=1e-10, atol=1e-12)
        assert alone.steps[0] == batch.steps[b] and alone.grad_evals[0] == batch.grad_evals[b]
        assert alone.status[0] == batch.status[b]
    perm = torch.tensor([6, 2, 0, 5, 1, 4, 3])              # batch order does not matter either
    shuffled = bb.minimize(lambda z, rows: loss(z, perm[rows]), torch.zeros(7, 3), indexed=True)
    assert torch.allclose(shuffled.z, batch.z[perm], rtol=1e-10, atol=1e-12)


def test_stationary_start_nonfinite_and_dtype():
    res = BB().minimize(lambda z: (z ** 2).sum(1), torch.zeros(3, 2))
    assert res.status == [AMDStatus.CONVERGED] * 3 and int(res.steps.sum()) == 0
    res = BB().minimize(lambda z: torch.log(z[:, 0]), torch.tensor([[-1.0], [1.0]]))
    assert res.status[0] is AMDStatus.NONFINITE
    a = torch.ones(2, 3, dtype=torch.float32)
    res = BB(max_steps=5).minimize(lambda z: ((z - a) ** 2).sum(1), torch.zeros(2, 3, dtype=torch.float32))
    assert res.z.dtype == torch.float32 and res.loss.dtype == torch.float32


@pytest.mark.parametrize("kwargs, match", [
    ({"s0": -1}, "s0"), ({"smin": 0}, "smin"), ({"smax": 1e-9}, "smax"), ({"memory": 0}, "memory"),
    ({"c1": 1.0}, "c1"), ({"c1": -0.1}, "c1"), ({"variant": "bb3"}, "variant"), ({"max_steps": 0}, "max_steps"),
    ({"patience": 0}, "patience"), ({"flat_rtol": -1.0}, "flat_rtol"), ({"max_backtracks": -1}, "max_backtracks"),
])
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(UserInputError, match=match):
        BB(**kwargs)


def test_invalid_inputs():
    with pytest.raises(UserTypeError, match="z0"):
        BB().minimize(lambda z: z.sum(1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(UserInputError, match="loss_fn must return shape"):
        BB().minimize(lambda z: z.sum(), torch.zeros(3, 2))
    dec = nn.Sequential(nn.Linear(3, 10), nn.Sigmoid())
    with pytest.raises(UserTypeError, match="solver"):
        GradientFlowEncoder(dec, 3, solver=3)
    with pytest.raises(UserTypeError, match="bb must be"):
        GradientFlowEncoder(dec, 3, solver="bb", bb=AMD())
    with pytest.raises(UserInputError, match="solver"):
        GradientFlowEncoder(dec, 3, solver="lbfgs")
    with pytest.raises(UserInputError, match="alpha_decay"):
        GradientFlowEncoder(dec, 3, solver="bb", alpha_decay=True)


def test_encoder_name_and_object_and_training_gradients():
    dec, y, _ = _decoder_problem(B=5)
    by_name = GradientFlowEncoder(dec, 3, solver="bb").encode(y)
    by_obj = GradientFlowEncoder(dec, 3, solver=BB()).encode(y)
    assert torch.equal(by_name.z, by_obj.z) and by_name.stats["solver"] == "bb"
    assert torch.equal(by_name.decoder_evals, by_obj.decoder_evals)
    amd_obj = GradientFlowEncoder(dec, 3, solver=AMD(max_steps=7))
    assert amd_obj.solver == "amd" and amd_obj.amd.max_steps == 7
    grads = {}
    for adjoint in ("approx", "full", "unrolled"):
        enc = GradientFlowEncoder(dec, 3, solver=BB(max_steps=25), adjoint=adjoint)
        dec.zero_grad()
        tl = enc.training_loss(y)
        tl.loss.backward()
        grads[adjoint] = torch.cat([p.grad.flatten() for p in dec.parameters()])
        assert torch.allclose(tl.per_sample, by_name.loss, rtol=1e-10) or adjoint != "approx"
    def rel(a, b):
        return float((a - b).norm() / b.norm())
    assert rel(grads["full"], grads["unrolled"]) < 1e-6
    assert rel(grads["approx"], grads["unrolled"]) < 0.5


def test_digits_half_of_amds_decoder_evaluations_at_equal_final_loss():
    """Briefly AE-trained digits decoder, 120 held-out images, float32 as in training.

    Measured: AMD 0.4167 mean BCE with 179 decoder evaluations per encoding, BB 0.4037 with 27.7
    (ratio 0.15).  The issue asks for at most one half at equal (within 1 %) final loss; asserted: BB's
    loss at most AMD's + 1 % and at most a third of its evaluations.
    """
    dt = torch.float32
    data = load_dataset("digits", dtype=dt)
    torch.manual_seed(0)
    enc_net, dec = make_encoder(data.data_dim, dtype=dt), make_decoder(data.data_dim, dtype=dt)
    opt = torch.optim.Adam(list(enc_net.parameters()) + list(dec.parameters()), lr=2e-3)
    for _ in range(3):
        for idx in torch.randperm(len(data.train)).split(32):
            y = data.train[idx]
            opt.zero_grad()
            reconstruction_loss(dec(enc_net(y)), y).mean().backward()
            opt.step()
    y = data.val[:120]
    amd = GradientFlowEncoder(dec, dec[0].in_features, solver="amd").encode(y)
    bb = GradientFlowEncoder(dec, dec[0].in_features, solver="bb").encode(y)
    amd_loss, bb_loss = float(amd.loss.mean()), float(bb.loss.mean())
    amd_evals, bb_evals = float(amd.decoder_evals.float().mean()), float(bb.decoder_evals.float().mean())
    assert bb_loss <= 1.01 * amd_loss, (bb_loss, amd_loss)
    assert bb_evals <= amd_evals / 3, (bb_evals, amd_evals)
    print(f"digits: AMD loss {amd_loss:.5f} evals {amd_evals:.1f}; BB loss {bb_loss:.5f} evals {bb_evals:.1f}")
    start = reconstruction_loss(dec(torch.zeros(len(y), dec[0].in_features, dtype=dt)), y)
    assert bool((bb.loss <= start).all())
