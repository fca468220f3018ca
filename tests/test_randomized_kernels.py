"""Fast kernels of the randomized flows: per-sample convolution and inverse-CDF categorical draws."""

import pytest
import torch

from flowlearn.randomized.interactions import per_sample_conv2d
from flowlearn.randomized.sampling import categorical


@pytest.mark.parametrize(("c_in", "c_out", "k"), [(2, 2, 3), (3, 2, 3), (2, 3, 5)])
def test_per_sample_conv_matches_conv2d_and_gradcheck(c_in, c_out, k):
    B = 3
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, B * c_in, 9, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(B * c_out, c_in, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    out = per_sample_conv2d(x, w, B, k // 2)
    ref = torch.nn.functional.conv2d(x, w, padding=k // 2, groups=B)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: per_sample_conv2d(a, b, B, k // 2), (x, w))
    assert torch.backends.mkldnn.enabled          # the backend flag is restored


def test_per_sample_conv_float32_agrees_with_onednn():
    B, c = 4, 2
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, B * c, 32, 32, generator=g, requires_grad=True)
    w = torch.rand(B * c, c, 3, 3, generator=g, requires_grad=True)
    gout = torch.randn(1, B * c, 32, 32, generator=g)
    gx, gw = torch.autograd.grad(per_sample_conv2d(x, w, B, 1), (x, w), gout)
    rx, rw = torch.autograd.grad(torch.nn.functional.conv2d(x, w, padding=1, groups=B), (x, w), gout)
    torch.testing.assert_close(gx, rx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-4)


def test_categorical_law():
    probs = torch.tensor([[0.2, 0.0, 0.8], [1.0, 1.0, 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    draws = categorical(probs, 200_000, torch.Generator().manual_seed(0))
    assert draws.shape == (3, 200_000) and draws.dtype == torch.long
    freq = torch.stack([(draws == a).double().mean(1) for a in range(3)], 1)
    expected = probs / probs.sum(1, keepdim=True)
    # binomial standard error <= 0.0012: 5 sigma
    torch.testing.assert_close(freq, expected, rtol=0, atol=6e-3)
    assert not bool((draws[0] == 1).any()) and bool((draws[2] == 2).all())   # zero mass is never drawn


def test_categorical_is_reproducible_and_float32():
    p = torch.rand(1000, 4, generator=torch.Generator().manual_seed(3))
    a = categorical(p, 5, torch.Generator().manual_seed(7))
    b = categorical(p, 5, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and int(a.max()) <= 3 and int(a.min()) >= 0
