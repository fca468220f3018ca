"""GridWeights3D: 6-/26-neighbour voxel stencils against an independent dense reference; adjoints,
anisotropic default weights, patch gradients, the linearized layer and the labeling flows on volumes."""

import math

import pytest
import torch

from flowlearn._checks import UserInputError
from flowlearn.graphs import GridWeights3D
from flowlearn.labeling import AssignmentFlow, LinearizedAssignmentFlow
from flowlearn.linearized import (
    DenseAutograd,
    Exact,
    LinearizedAssignmentLayer,
    LowRank,
    linearized_flow,
)

SHAPES = [(3, 4, 5), (1, 3, 4), (2, 1, 3), (4, 2, 1)]


def _offsets(nb):
    """The documented slot order: offsets (dz, dy, dx) in lexicographic order."""
    box = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]
    return box if nb == 26 else [o for o in box if abs(o[0]) + abs(o[1]) + abs(o[2]) <= 1]


def _random_patches(I, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(I, N, generator=g) + 0.05
    return p / p.sum(1, keepdim=True)


def _naive_dense(D, H, W, nb, patches):
    """Independent reference: loop over voxels and offsets, drop those outside, renormalise."""
    P = patches.tolist()
    I = D * H * W
    M = [[0.0] * I for _ in range(I)]
    for z in range(D):
        for y in range(H):
            for x in range(W):
                i = (z * H + y) * W + x
                valid = [(n, ((z + a) * H + y + b) * W + x + c) for n, (a, b, c) in enumerate(_offsets(nb))
                         if 0 <= z + a < D and 0 <= y + b < H and 0 <= x + c < W]
                tot = sum(P[i][n] for n, _ in valid)
                for n, k in valid:
                    M[i][k] += P[i][n] / tot
    return torch.tensor(M, dtype=torch.float64)


def _gauss(nb, spacing, sigma):
    raw = torch.tensor([math.exp(-((spacing[0] * a) ** 2 + (spacing[1] * b) ** 2 + (spacing[2] * c) ** 2)
                                 / (2 * sigma**2)) for a, b, c in _offsets(nb)], dtype=torch.float64)
    return raw / raw.sum()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nb", [6, 26])
def test_apply_matches_naive_dense(shape, nb):
    D, H, W = shape
    I, N = D * H * W, (7 if nb == 6 else 27)
    p = _random_patches(I, N, seed=I + N)
    om = GridWeights3D(D, H, W, neighbourhood=nb, patches=p)
    assert (om.num_nodes, om.patch_size) == (I, N) and om.offsets == _offsets(nb)
    assert om.offsets[om.center] == (0, 0, 0)
    ref = _naive_dense(D, H, W, nb, p)
    torch.testing.assert_close(om.to_dense(), ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(torch.tensor(om.to_scipy().toarray()), ref, rtol=0, atol=1e-14)
    x = torch.randn(I, 3, 2)
    torch.testing.assert_close(om.apply(x), torch.einsum("ik,kab->iab", ref, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(om.apply_transpose(x), torch.einsum("ki,kab->iab", ref, x), rtol=0, atol=1e-12)
    # the shifted-slice products (used when the weights require grad) against the same reference
    og = om.with_patches(p.clone().requires_grad_(True))
    torch.testing.assert_close(og.apply(x), torch.einsum("ik,kab->iab", ref, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(og.apply_transpose(x), torch.einsum("ki,kab->iab", ref, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(om._apply(om.weights, x), torch.einsum("ik,kab->iab", ref, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(om._apply_transpose(om.weights, x), torch.einsum("ki,kab->iab", ref, x),
                               rtol=0, atol=1e-12)
    # adjoint: <Omega x, y> = <x, Omega^T y>
    y = torch.randn(I, 3, 2)
    lhs = (om._apply(om.weights, x) * y).sum()
    rhs = (x * om._apply_transpose(om.weights, y)).sum()
    assert abs(float(lhs - rhs)) < 1e-12


@pytest.mark.parametrize("nb", [6, 26])
def test_anisotropic_default_matches_reference(nb):
    D, H, W = 3, 4, 5
    spacing, sigma = (4.0, 1.0, 1.5), 2.5
    om = GridWeights3D(D, H, W, nb, spacing=spacing, sigma=sigma)
    p = _gauss(nb, spacing, sigma).expand(D * H * W, -1)
    torch.testing.assert_close(om.patches, p, rtol=0, atol=1e-15)
    ref = _naive_dense(D, H, W, nb, p)
    torch.testing.assert_close(om.to_dense(), ref, rtol=0, atol=1e-14)
    x = torch.randn(D * H * W, 4)
    torch.testing.assert_close(om.apply(x), ref @ x, rtol=0, atol=1e-12)
    torch.testing.assert_close(om.apply_transpose(x), ref.T @ x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("nb", [6, 26])
def test_default_weights_rows_and_spacing(nb):
    D, H, W = 3, 4, 5
    om = GridWeights3D(D, H, W, nb, spacing=(4, 1, 1))
    assert om.sigma == 4.0 and om.dtype == torch.float64
    w = om.weights
    torch.testing.assert_close(w.sum(1), torch.ones(D * H * W), rtol=0, atol=1e-14)
    assert bool((w[~om.mask] == 0).all()) and bool((w[om.mask] > 0).all())
    slot = {o: n for n, o in enumerate(_offsets(nb))}
    expected_ratio = math.exp(-(16.0 - 1.0) / (2 * 16.0))  # exp(-(|dz|^2 - |dy|^2) / (2 sigma^2))
    for z, y, x in [(1, 1, 2), (0, 0, 0), (2, 3, 4), (1, 0, 4)]:  # interior and border voxels
        i = (z * H + y) * W + x
        zn = (1, 0, 0) if z + 1 < D else (-1, 0, 0)
        yn = (0, 1, 0) if y + 1 < H else (0, -1, 0)
        xn = (0, 0, 1) if x + 1 < W else (0, 0, -1)
        assert abs(float(w[i, slot[zn]] / w[i, slot[yn]]) - expected_ratio) < 1e-13
        assert abs(float(w[i, slot[xn]] / w[i, slot[yn]]) - 1.0) < 1e-13
        assert w[i, slot[zn]] < w[i, slot[yn]]
    # interior voxel: exactly the normalised Gaussian
    torch.testing.assert_close(w[(1 * H + 1) * W + 2], _gauss(nb, (4, 1, 1), 4.0), rtol=0, atol=1e-15)
    # uniform spacing: all face neighbours weigh the same, less than the centre
    iso = GridWeights3D(D, H, W, nb).weights[(1 * H + 1) * W + 2]
    faces = [iso[slot[o]] for o in slot if sum(map(abs, o)) == 1]
    assert max(faces) - min(faces) < 1e-15 and faces[0] < iso[slot[(0, 0, 0)]]


@pytest.mark.parametrize("nb", [6, 26])
def test_patch_gradients_against_autograd(nb):
    D, H, W = 3, 4, 5
    I, N = D * H * W, (7 if nb == 6 else 27)
    p = _random_patches(I, N, seed=3).requires_grad_(True)
    om = GridWeights3D(D, H, W, nb, patches=p, spacing=(3, 1, 1))
    u, x = torch.randn(I, 3), torch.randn(I, 3)
    (u * om.apply(x)).sum().backward()
    om0 = GridWeights3D(D, H, W, nb, patches=p.detach())
    G = om0.patch_products(u, x)
    ref_G = torch.stack([(u * x[om0.neighbour_index()[:, n]]).sum(1) for n in range(N)], 1) * om0.mask
    torch.testing.assert_close(G, ref_G, rtol=0, atol=1e-13)
    torch.testing.assert_close(om0.grad_to_patches(G), p.grad, rtol=0, atol=1e-12)
    # d<U, Omega^T X>/d omega = G(X, U)
    p.grad = None
    (u * om.apply_transpose(x)).sum().backward()
    torch.testing.assert_close(om0.grad_to_patches(om0.patch_products(x, u)), p.grad, rtol=0, atol=1e-12)


def test_dtype_device_and_float32():
    om = GridWeights3D(2, 3, 4, 26, spacing=(5, 1, 1), dtype=torch.float32)
    x = torch.randn(24, 2, dtype=torch.float32)
    assert om.apply(x).dtype == torch.float32 and om.apply_transpose(x).dtype == torch.float32
    ref = om.to(dtype=torch.float64)
    torch.testing.assert_close(om.apply(x).double(), ref.apply(x.double()), rtol=0, atol=1e-6)
    assert isinstance(ref, GridWeights3D) and ref.spacing == (5.0, 1.0, 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda(dtype):
    om = GridWeights3D(3, 4, 5, 26, spacing=(4, 1, 1), dtype=dtype)
    x = torch.randn(60, 3, dtype=dtype)
    oc = om.to(device="cuda")
    for f in ("apply", "apply_transpose"):
        out = getattr(oc, f)(x.cuda())
        assert out.device.type == "cuda" and out.dtype == dtype
        torch.testing.assert_close(out.cpu(), getattr(om, f)(x))
    torch.testing.assert_close(oc.patch_products(x.cuda(), x.cuda()).cpu(), om.patch_products(x, x))
    torch.testing.assert_close(oc.to_dense().cpu(), om.to_dense())


def test_linearized_layer_exact_vs_dense_autograd():
    D, H, W, J = 3, 4, 5, 3
    om = GridWeights3D(D, H, W, 26, spacing=(4, 1, 1))
    I, N = om.num_nodes, om.patch_size
    g = torch.Generator().manual_seed(1)
    results = []
    for method in (Exact(), DenseAutograd()):
        p = _random_patches(I, N, seed=5).requires_grad_(True)
        dist = torch.rand(I, J, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        V = linearized_flow(p, dist, om, rho=0.5, T=2.0, method=method)
        c = torch.randn(I, J, generator=g.manual_seed(7))
        (V * c).sum().backward()
        results.append((V.detach(), p.grad, dist.grad))
    for a, b in zip(*results):
        assert float((a - b).abs().max()) < 1e-10
    assert float(results[0][1].abs().max()) > 1e-6  # non-trivial gradients


@pytest.mark.parametrize("method", [Exact(), LowRank(m=54, rank=54)])
def test_linearized_layer_gradcheck(method):
    om = GridWeights3D(2, 3, 3, 6, spacing=(3, 1, 1))
    I, N, J = om.num_nodes, om.patch_size, 3
    logits = torch.randn(I, N, requires_grad=True)
    dist = torch.rand(I, J, requires_grad=True)
    layer = LinearizedAssignmentLayer(rho=0.7, T=1.5, method=method, neighbourhood=om.neighbourhood)
    grid = (om.depth, om.height, om.width)

    def f(lg, d):  # the channels-first layer on the flat (I, N) / (I, J) inputs of the test
        first = lambda x: x.T.reshape(1, -1, *grid)
        return layer.tangent(first(torch.softmax(lg, -1)), first(d))

    fast = isinstance(method, LowRank)  # random Jacobian projections (the full Jacobian costs ~20 s)
    assert torch.autograd.gradcheck(f, (logits, dist), eps=1e-6, atol=1e-7, rtol=1e-6, fast_mode=fast)


def _two_region_volume(D=6, H=8, W=8, noise=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(torch.arange(D), torch.arange(H), torch.arange(W), indexing="ij")
    truth = (2 * z + y + 0.5 * x > 9.0).long().reshape(-1)  # two regions split by an oblique plane
    f = truth.double() + noise * torch.randn(truth.shape, generator=g, dtype=torch.float64)
    dist = (f[:, None] - torch.tensor([0.0, 1.0])[None, :]) ** 2
    return truth, dist


@pytest.mark.parametrize("nb", [6, 26])
def test_flows_label_noisy_volume(nb):
    truth, dist = _two_region_volume()
    assert 0.2 < float(truth.double().mean()) < 0.8
    pixelwise = float((dist.argmin(1) != truth).double().mean())
    assert pixelwise > 0.1
    om = GridWeights3D(6, 8, 8, nb, spacing=(2, 1, 1))
    full = AssignmentFlow(om, rho=0.5, step_size=0.5, max_steps=400).run(dist)
    lin = LinearizedAssignmentFlow(om, rho=0.5, T=10.0).run(dist)
    for res in (full, lin):
        assert res.status.ok
        err = float((res.labels != truth).double().mean())
        assert err < 0.5 * pixelwise, (err, pixelwise)


@pytest.mark.parametrize("kwargs,needle", [
    ({"neighbourhood": 7}, "neighbourhood"),
    ({"neighbourhood": "26"}, "neighbourhood"),
    ({"neighbourhood": True}, "neighbourhood"),
    ({"spacing": (1, 1)}, "spacing"),
    ({"spacing": (0, 1, 1)}, "spacing"),
    ({"spacing": (float("nan"), 1, 1)}, "spacing"),
    ({"spacing": 3.0}, "spacing"),
    ({"sigma": -1.0}, "sigma"),
    ({"depth": 0}, "depth"),
    ({"height": 2.5}, "height"),
    ({"patches": torch.full((24, 9), 1 / 9)}, "patches"),
    ({"patches": torch.full((24, 7), -1 / 7)}, "patches"),
    ({"patches": torch.full((24, 7), 1 / 6)}, "patches"),
])
def test_bad_arguments(kwargs, needle):
    args = {"depth": 2, "height": 3, "width": 4}
    args.update(kwargs)
    with pytest.raises(UserInputError) as info:
        GridWeights3D(**args)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg
    assert isinstance(info.value, ValueError)
