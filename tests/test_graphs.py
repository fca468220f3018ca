"""Weight operators against dense matrices; boundary handling; input errors."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from flowlearn.graphs import GraphWeights, GridWeights


def _random_patches(I, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(I, N, generator=g) + 0.05
    return p / p.sum(1, keepdim=True)


def _naive_grid_dense(H, W, k, patches):
    """Independent reference: loop over pixels, drop neighbours outside, renormalise."""
    s = k // 2
    D = np.zeros((H * W, H * W))
    P = patches.numpy().reshape(H, W, k, k)
    for r in range(H):
        for c in range(W):
            tot = 0.0
            for a in range(-s, s + 1):
                for b in range(-s, s + 1):
                    if 0 <= r + a < H and 0 <= c + b < W:
                        tot += P[r, c, a + s, b + s]
            for a in range(-s, s + 1):
                for b in range(-s, s + 1):
                    if 0 <= r + a < H and 0 <= c + b < W:
                        D[r * W + c, (r + a) * W + c + b] += P[r, c, a + s, b + s] / tot
    return torch.tensor(D)


@pytest.mark.parametrize("H,W,k", [(5, 6, 3), (7, 4, 5), (3, 3, 5), (1, 6, 3), (6, 6, 1)])
def test_grid_matches_naive_dense(H, W, k):
    p = _random_patches(H * W, k * k, seed=H + W + k)
    om = GridWeights(H, W, k, patches=p)
    dense = _naive_grid_dense(H, W, k, p)
    torch.testing.assert_close(om.to_dense(), dense)
    torch.testing.assert_close(dense.sum(1), torch.ones(H * W))
    x = torch.randn(H * W, 3, 2)
    torch.testing.assert_close(om.apply(x), torch.einsum("ik,kab->iab", dense, x))
    torch.testing.assert_close(om.apply_transpose(x), torch.einsum("ki,kab->iab", dense, x))
    torch.testing.assert_close(torch.tensor(om.to_scipy().toarray()), dense)


def test_grid_boundary_neighbourhood_sizes():
    om = GridWeights(5, 5, 3)
    counts = om.mask.sum(1).reshape(5, 5)
    assert counts[0, 0] == 4 and counts[0, 2] == 6 and counts[2, 2] == 9
    # uniform default: 1/|N_i| on the pixels that exist
    torch.testing.assert_close(om.to_dense()[0].max(), torch.tensor(0.25))


@pytest.mark.parametrize("kind", ["grid", "graph"])
def test_patch_products_is_gradient_of_bilinear_form(kind):
    if kind == "grid":
        om = GridWeights(4, 5, 3, patches=_random_patches(20, 9))
    else:
        edges = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [0, 2], [4, 2]])
        om = GraphWeights(edges, 5)
    u, x = torch.randn(om.num_nodes, 3), torch.randn(om.num_nodes, 3)
    w = om.weights.clone().requires_grad_(True)
    (u * om.apply(x, weights=w)).sum().backward()
    torch.testing.assert_close(om.patch_products(u, x), w.grad * om.mask)


def test_grad_to_patches_matches_autograd():
    om = GridWeights(4, 4, 3, patches=_random_patches(16, 9, seed=3))
    G = torch.randn(16, 9)
    p = om.patches.clone().requires_grad_(True)
    (om.with_patches(p).weights * G).sum().backward()
    torch.testing.assert_close(om.grad_to_patches(G), p.grad)


def test_graph_from_edges_and_adjacency():
    edges = np.array([[0, 1], [1, 2], [2, 0], [2, 3], [3, 2], [1, 1]])
    om = GraphWeights(edges, 5)
    D = om.to_dense()
    expected = np.zeros((5, 5))
    nbrs = {0: [0, 1, 2], 1: [0, 1, 2], 2: [0, 1, 2, 3], 3: [2, 3], 4: [4]}
    for i, ks in nbrs.items():
        expected[i, ks] = 1 / len(ks)
    torch.testing.assert_close(D, torch.tensor(expected))
    A = sp.coo_array((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(5, 5))
    torch.testing.assert_close(GraphWeights.from_adjacency(A).to_dense(), D)
    x = torch.randn(5, 2)
    torch.testing.assert_close(om.apply(x), D @ x)
    torch.testing.assert_close(om.apply_transpose(x), D.T @ x)


def test_grid_equals_graph_on_same_structure():
    H, W = 4, 5
    idx = np.arange(H * W).reshape(H, W)
    edges = []
    for r in range(H):
        for c in range(W):
            for a in (-1, 0, 1):
                for b in (-1, 0, 1):
                    if (a or b) and 0 <= r + a < H and 0 <= c + b < W:
                        edges.append((idx[r, c], idx[r + a, c + b]))
    torch.testing.assert_close(GraphWeights(np.array(edges), H * W).to_dense(), GridWeights(H, W, 3).to_dense())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_kept(dtype):
    om = GridWeights(3, 4, 3, dtype=dtype)
    assert om.apply(torch.randn(12, 2, dtype=dtype)).dtype == dtype


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(size=4), "size must be odd, got 4"),
        (dict(size=0), "size must be >= 1"),
        (dict(patches=-torch.ones(12, 9) / 9), "non-negative"),
        (dict(patches=torch.ones(12, 9)), "normalised"),
        (dict(patches=torch.ones(11, 9) / 9), r"patches must have shape \(12, 9\), got shape \(11, 9\)"),
        (dict(patches=torch.full((12, 9), float("nan"))), "finite"),
    ],
)
def test_grid_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridWeights(3, 4, **kwargs)


def test_apply_shape_error_and_graph_errors():
    om = GridWeights(3, 4)
    with pytest.raises(ValueError, match="must have 12 rows"):
        om.apply(torch.randn(10, 2))
    with pytest.raises(ValueError, match=r"shape \(E, 2\)"):
        GraphWeights(np.zeros((3, 3), dtype=int), 4)
    with pytest.raises(ValueError, match="index nodes 0..3"):
        GraphWeights(np.array([[0, 7]]), 4)


# ------------------------------------------------- sparse CSR products (WeightOperator.sparse_operator)
def _stencil_products(om, X):
    """The subclass's own shift/gather products, bypassing the CSR dispatch of ``apply``."""
    return om._apply(om.weights, X), om._apply_transpose(om.weights, X)


def _irregular_graph(n=30, seed=1):
    g = np.random.default_rng(seed)
    edges = g.integers(0, n, size=(70, 2))
    return GraphWeights(edges, n)


@pytest.mark.parametrize("make", [lambda: GridWeights(7, 9, 3, patches=_random_patches(63, 9)),
                                  lambda: GridWeights(6, 5, 5, patches=_random_patches(30, 25, seed=2)),
                                  lambda: GridWeights(1, 4, 3),
                                  _irregular_graph])
def test_csr_products_equal_stencil_products_and_dense(make):
    om = make()
    I = om.num_nodes
    dense = torch.as_tensor(om.to_scipy().toarray())
    for shape in [(I,), (I, 3), (I, 2, 4)]:
        X = torch.randn(*shape)
        st, st_t = _stencil_products(om, X)
        csr, csr_t = om.apply(X), om.apply_transpose(X)
        assert csr.shape == X.shape and csr_t.shape == X.shape
        torch.testing.assert_close(csr, st, rtol=0, atol=1e-14)
        torch.testing.assert_close(csr_t, st_t, rtol=0, atol=1e-14)
        torch.testing.assert_close(csr.reshape(I, -1), dense @ X.reshape(I, -1), rtol=0, atol=1e-14)
        torch.testing.assert_close(csr_t.reshape(I, -1), dense.T @ X.reshape(I, -1), rtol=0, atol=1e-14)
    omega, omega_t = om.sparse_operator()
    torch.testing.assert_close(omega.to_dense(), dense, rtol=0, atol=1e-15)
    torch.testing.assert_close(omega_t.to_dense(), dense.T, rtol=0, atol=1e-15)
    # a valid CSR matrix: sorted, unique column indices, only the valid slots stored
    torch.sparse_csr_tensor(omega.crow_indices(), omega.col_indices(), omega.values(), omega.shape,
                            check_invariants=True)
    torch.sparse_csr_tensor(omega_t.crow_indices(), omega_t.col_indices(), omega_t.values(), omega_t.shape,
                            check_invariants=True)
    assert omega.values().numel() == int(om.mask.sum())


def test_csr_pattern_is_shared_and_value_cache_follows_the_patches():
    om = GridWeights(5, 6, 3, patches=_random_patches(30, 9))
    other = om.with_patches(_random_patches(30, 9, seed=4))
    assert other.sparse_pattern() is om.sparse_pattern()  # built once per structure
    X = torch.randn(30, 2)
    torch.testing.assert_close(other.apply(X), _stencil_products(other, X)[0], rtol=0, atol=1e-14)
    om.patches.copy_(_random_patches(30, 9, seed=5))  # in-place change invalidates the cached values
    torch.testing.assert_close(om.apply(X), _stencil_products(om, X)[0], rtol=0, atol=1e-14)
    w = _random_patches(30, 9, seed=6)
    torch.testing.assert_close(om.apply(X, weights=w), om._apply(w, X), rtol=0, atol=1e-14)
    torch.testing.assert_close(om.apply_transpose(X, weights=w), om._apply_transpose(w, X), rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match=r"weights must have shape \(30, 9\)"):
        om.sparse_operator(torch.ones(30, 4))


def test_csr_keeps_autograd_in_x_and_stencil_handles_weight_gradients():
    om = GridWeights(4, 5, 3, patches=_random_patches(20, 9))
    dense = om.to_dense()
    U = torch.randn(20, 3)
    X = torch.randn(20, 3, requires_grad=True)
    (gx,) = torch.autograd.grad((om.apply(X) * U).sum(), X)  # CSR path, differentiated in X
    torch.testing.assert_close(gx, dense.T @ U, rtol=0, atol=1e-14)
    (gx,) = torch.autograd.grad((om.apply_transpose(X) * U).sum(), X)
    torch.testing.assert_close(gx, dense @ U, rtol=0, atol=1e-14)
    # weights requiring grad: apply falls back to the stencil, whose gradient is patch_products
    w = om.weights.clone().requires_grad_(True)
    Xd = X.detach()
    (gw,) = torch.autograd.grad((om.apply(Xd, weights=w) * U).sum(), w)
    torch.testing.assert_close(gw, om.patch_products(U, Xd), rtol=0, atol=1e-14)
    p = om.patches.clone().requires_grad_(True)
    (gp,) = torch.autograd.grad((om.with_patches(p).apply(Xd) * U).sum(), p)
    torch.testing.assert_close(gp, om.grad_to_patches(om.patch_products(U, Xd)), rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="not differentiable with respect to the weights"):
        om.sparse_operator(w)
    with pytest.raises(ValueError, match="not differentiable with respect to the weights"):
        om.with_patches(p).sparse_operator()
    with torch.no_grad():  # no grad mode: CSR is fine even for weights that require grad
        torch.testing.assert_close(om.with_patches(p).apply(Xd), om.apply(Xd), rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_csr_products_keep_dtype_and_promote_like_the_stencil(dtype):
    om = GridWeights(4, 4, 3, dtype=dtype)
    X = torch.randn(16, 2, dtype=dtype)
    assert om.apply(X).dtype == dtype and om.apply_transpose(X).dtype == dtype
    om64 = GridWeights(4, 4, 3, dtype=torch.float64)
    X32 = torch.randn(16, 2, dtype=torch.float32)
    assert om64.apply(X32).dtype == om64._apply(om64.weights, X32).dtype == torch.float64
