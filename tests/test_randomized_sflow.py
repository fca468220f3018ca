"""Randomized S-flow: interaction structure, geometric Euler, sampling, marginals, expectations."""

import pytest
import torch

from flowlearn.engine import spec
from flowlearn.randomized import (
    ConvInteraction,
    LabelInteraction,
    NodeInteraction,
    RandomizedAssignmentFlow,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("interaction", [NodeInteraction(), LabelInteraction()])
def test_random_interaction_is_symmetric_nonnegative(interaction):
    f = RandomizedAssignmentFlow(5, 3, interaction=interaction, mean_init=-0.2, variance_init=1.0)
    om = f.sample_interaction(4, gen())
    torch.testing.assert_close(om, om.transpose(-1, -2))
    assert bool((om >= 0).all())
    assert bool((torch.diagonal(om, dim1=-2, dim2=-1) >= f.epsilon).all())
    assert bool((om == 0).any())  # max(., 0) clips some entries at this negative mean


def test_conv_interaction_is_a_symmetric_operator():
    rows, cols, c = 4, 5, 2
    f = RandomizedAssignmentFlow(rows * cols, c, interaction=ConvInteraction((rows, cols)), variance_init=0.5)
    k = f.sample_interaction(1, gen(1))
    n = rows * cols
    basis = torch.eye(n * c).reshape(n * c, n, c)
    dense = torch.stack([f.interaction.apply(f, k.expand(1, -1, -1, -1, -1), b[None])[0].reshape(-1) for b in basis], 1)
    torch.testing.assert_close(dense, dense.T)
    assert bool((dense >= 0).all())
    assert bool((torch.diagonal(dense) >= f.epsilon).all())


def test_geometric_euler_step_formula():
    f = RandomizedAssignmentFlow(4, 3, step_size=0.25, end_time=0.5, initial_logits=torch.randn(4, 3))
    om = f.sample_interaction(2, gen())
    log_s0 = f.initial_log_point(2)
    s = log_s0.exp()
    for _ in range(2):  # S <- S * exp(h Omega S) / normaliser
        s = s * torch.exp(0.25 * om @ s)
        s = s / s.sum(-1, keepdim=True)
    torch.testing.assert_close(f.integrate(om, log_s0).exp(), s)


def test_label_interaction_with_kronecker_structure_equals_node_flow():
    n, c = 4, 2
    node = RandomizedAssignmentFlow(n, c, initial_logits=torch.randn(n, c))
    label = RandomizedAssignmentFlow(n, c, interaction=LabelInteraction(), initial_logits=node.init_logits.detach())
    om = node.sample_interaction(3, gen())
    big = torch.einsum("zij,ab->ziajb", om, torch.eye(c)).reshape(3, n * c, n * c)  # Omega (x) I_c
    log_s0 = node.initial_log_point(3)
    torch.testing.assert_close(node.integrate(om, log_s0), label.integrate(big, log_s0))


def test_flow_converges_to_integer_labelings():
    f = RandomizedAssignmentFlow(6, 3, end_time=30.0, step_size=0.5, mean_init=0.5, initial_logits=torch.randn(6, 3))
    s = f(50, gen()).exp().detach()
    assert float(s.max(-1).values.min()) > 0.99


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampling_shapes_dtypes_reproducible(dtype):
    f = RandomizedAssignmentFlow(6, 3, init_rank=2, init_noise=0.5, dtype=dtype)
    a = f.sample(100, gen(3), chunk_size=7)
    b = f.sample(100, gen(3), chunk_size=7)
    assert a.dtype == torch.long and a.shape == (100, 6)
    assert torch.equal(a, b)
    assert int(a.min()) >= 0 and int(a.max()) <= 2
    assert f(5).dtype == dtype
    r = f.sample(50, gen(4), rounding="random")
    assert r.shape == (50, 6)
    assert f.marginals(64, gen()).dtype == dtype


def test_marginals_and_expectations_agree():
    f = RandomizedAssignmentFlow(5, 2, init_rank=1, init_noise=1.0)
    # with argmax rounding both average the same rounded samples (same generator): exactly equal
    onehot_mean = f.expectation(lambda cfg: torch.nn.functional.one_hot(cfg, 2), 3000, gen(7), rounding="argmax")
    marg = f.marginals(3000, gen(7), rounding="argmax")
    torch.testing.assert_close(onehot_mean, marg)
    assert torch.allclose(marg.sum(-1), torch.ones(5))
    # eq. (25): E<S, phi> over soft end points equals E_P[Q phi] under random rounding, in expectation
    phi = torch.randn(5, 2)
    soft = f.marginals(20000, gen(8), rounding="random")
    lin = f.expectation(lambda cfg: phi.gather(1, cfg.T).sum(0), 20000, gen(9), rounding="random")
    assert float((soft * phi).sum()) == pytest.approx(float(lin), abs=0.05)


def test_reparameterised_gradients_match_finite_differences():
    f = RandomizedAssignmentFlow(3, 2, init_rank=1, init_noise=0.3, initial_logits=torch.randn(3, 2), end_time=0.3)
    w = torch.randn(3, 2)

    def loss():
        return (f(4, gen(11)).exp() * w).sum()

    params = dict(f.named_parameters())
    grads = torch.autograd.grad(loss(), list(params.values()))
    for (name, p), g in zip(params.items(), grads):
        idx = (0,) * p.ndim
        with torch.no_grad():
            old = p[idx].item()
            p[idx] = old + 1e-6
            up = loss().item()
            p[idx] = old - 1e-6
            down = loss().item()
            p[idx] = old
        assert g[idx].item() == pytest.approx((up - down) / 2e-6, abs=1e-6), name


def test_invalid_arguments():
    with pytest.raises(TypeError, match="interaction must be an Interaction"):
        RandomizedAssignmentFlow(4, 2, interaction="node")
    with pytest.raises(TypeError, match="grid_shape"):
        ConvInteraction(None)
    with pytest.raises(ValueError, match="kernel_size"):
        ConvInteraction((2, 2), kernel_size=2)
    with pytest.raises(ValueError, match="does not match"):
        RandomizedAssignmentFlow(4, 2, interaction=ConvInteraction((3, 2)))
    with pytest.raises(ValueError, match="drive_scale"):
        NodeInteraction(drive_scale="sqrt")
    with pytest.raises(ValueError, match="step_size"):
        RandomizedAssignmentFlow(4, 2, step_size=0)
    with pytest.raises(ValueError, match="initial_logits"):
        RandomizedAssignmentFlow(4, 2, initial_logits=torch.zeros(3, 2))
    f = RandomizedAssignmentFlow(4, 2)
    with pytest.raises(ValueError, match="rounding must be one of"):
        f.sample(3, rounding="nearest")
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        f.sample(0)
    with pytest.raises(ValueError, match="leading dimension"):
        f.expectation(lambda cfg: cfg.sum(), 4)


def test_constructor_arguments_are_the_flow_identity():
    f = RandomizedAssignmentFlow(6, 2, interaction=ConvInteraction((2, 3), kernel_size=3), step_size=0.2,
                                 initial_logits=torch.zeros(6, 2))
    assert f.hparams["interaction"] == ConvInteraction((2, 3)) and f.hparams["step_size"] == 0.2
    d = spec(f)
    assert d["interaction"] == {"type": "flowlearn.randomized.interactions.ConvInteraction", "grid_shape": [2, 3],
                                "kernel_size": 3}
    assert d["end_time"] == 1.0 and isinstance(d["initial_logits"], str)  # tensors by fingerprint
    with pytest.raises(AttributeError):
        NodeInteraction().drive_scale = "degree"  # frozen
