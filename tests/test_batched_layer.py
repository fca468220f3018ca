"""The linearized flow on channels-first batches (2-D and 3-D) and the segmentation head.

A batch runs every sample in its own Krylov space in one block: it must equal the samples computed one by
one (values and gradients, 1e-12 in float64), and both must equal the dense autograd reference.
"""

import pytest
import torch

from flowlearn import AssignmentFlowHead
from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.graphs import BatchWeights, GridWeights, GridWeights3D
from flowlearn.linearized import DenseAutograd, Exact, LinearizedAssignmentLayer, LowRank, linearized_flow

F64 = torch.float64


def rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def inputs(n, J, spatial, K, *, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, K, *spatial, generator=g, dtype=F64) + 0.1
    D = 2.0 * torch.rand(n, J, *spatial, generator=g, dtype=F64)
    C = torch.randn(n, J, *spatial, generator=g, dtype=F64)          # a random cotangent
    return (p / p.sum(1, keepdim=True)).to(dtype), D.to(dtype), C.to(dtype)


def grads(layer, p, D, C, log_w=None):
    p, D = p.clone().requires_grad_(True), D.clone().requires_grad_(True)
    out = layer.tangent(p, D, log_w)
    (out * C).sum().backward()
    return out.detach(), p.grad, D.grad


CASES = [((5, 7), 3, 9, {}), ((3, 4, 5), 2, 27, {"neighbourhood": 26}), ((4, 3, 5), 3, 7, {"neighbourhood": 6})]


@pytest.mark.parametrize("spatial,J,K,kw", CASES)
@pytest.mark.parametrize("method", [LowRank(), LowRank(recompute_forward=True), Exact()])
def test_batch_equals_single_samples(spatial, J, K, kw, method):
    layer = LinearizedAssignmentLayer(rho=0.5, T=2.0, method=method, **kw)
    p, D, C = inputs(4, J, spatial, K)
    log_w = torch.log_softmax(torch.randn(4, J, *spatial, dtype=F64, generator=torch.Generator().manual_seed(5)), 1)
    V, gp, gD = grads(layer, p, D, C, log_w)
    for i in range(4):
        Vi, gpi, gDi = grads(layer, p[i:i + 1], D[i:i + 1], C[i:i + 1], log_w[i:i + 1])
        assert rel(V[i:i + 1], Vi) < 1e-12 and rel(gp[i:i + 1], gpi) < 1e-12 and rel(gD[i:i + 1], gDi) < 1e-12
    # ... and the one-sample function on the flattened grid (pixels row-major, channels last)
    op = layer.structure(spatial, "cpu")
    flat = lambda x: x[1].movedim(0, -1).reshape(-1, x.shape[1])
    pp, DD = flat(p).clone().requires_grad_(True), flat(D).clone().requires_grad_(True)
    V1 = linearized_flow(pp, DD, op, rho=0.5, T=2.0, method=method, log_assignment=flat(log_w))
    (V1 * flat(C)).sum().backward()
    assert rel(flat(V), V1) < 1e-12 and rel(flat(gp), pp.grad) < 1e-12 and rel(flat(gD), DD.grad) < 1e-12


@pytest.mark.parametrize("spatial,J,K,kw", CASES[:2])
def test_batch_equals_dense_autograd(spatial, J, K, kw):
    p, D, C = inputs(3, J, spatial, K, seed=1)
    ref = grads(LinearizedAssignmentLayer(rho=0.5, T=2.0, method=DenseAutograd(), **kw), p, D, C)
    k = 3 * J * int(torch.tensor(spatial).prod())
    for method in (Exact(), LowRank(m=k, rank=k)):
        got = grads(LinearizedAssignmentLayer(rho=0.5, T=2.0, method=method, **kw), p, D, C)
        assert rel(got[0], ref[0]) < 1e-10 and rel(got[1], ref[1]) < 1e-8 and rel(got[2], ref[2]) < 1e-8


def test_per_sample_breakdown_and_zero_samples_do_not_disturb_the_others():
    """Sample 1 has B = 0 (equal distances across labels), sample 2 a tiny grid space; the rest are unchanged."""
    layer = LinearizedAssignmentLayer(rho=0.5, T=2.0, method=LowRank(m=12, rank=12))
    p, D, C = inputs(3, 2, (2, 3), 9, seed=2)
    D[1] = D[1, :1]                                  # B = 0: V = 0
    V, gp, gD = grads(layer, p, D, C)
    assert float(V[1].abs().max()) == 0.0 and layer.stats["krylov_dim"][1] == 0
    assert layer.stats["forward_breakdown"][0] and layer.stats["krylov_dim"][0] <= 6   # I(J-1) = 6
    for i in (0, 2):
        Vi, gpi, gDi = grads(layer, p[i:i + 1], D[i:i + 1], C[i:i + 1])
        assert rel(V[i:i + 1], Vi) < 1e-12 and rel(gp[i:i + 1], gpi) < 1e-12 and rel(gD[i:i + 1], gDi) < 1e-12
    ref = grads(LinearizedAssignmentLayer(rho=0.5, T=2.0, method=DenseAutograd()), p, D, C)
    assert rel(gD, ref[2]) < 1e-8 and rel(gp, ref[1]) < 1e-8


def test_gradcheck_batched_3d():
    layer = LinearizedAssignmentLayer(rho=0.7, T=1.5, method=Exact(), neighbourhood=6)
    p, D, _ = inputs(2, 2, (2, 2, 3), 7, seed=3)
    assert torch.autograd.gradcheck(lambda a, b: layer(a, b), (p.requires_grad_(True), D.requires_grad_(True)),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("neighbourhood", [6, 26])
def test_batched_3d_stencil_equals_a_dense_reference(neighbourhood):
    """Omega_b x of BatchWeights on GridWeights3D against a dense matrix built here from the offsets."""
    Dz, H, W = 3, 4, 2
    op = GridWeights3D(Dz, H, W, neighbourhood=neighbourhood, spacing=(3.0, 1.0, 1.0))
    g = torch.Generator().manual_seed(0)
    p = torch.rand(2, op.num_nodes, op.patch_size, generator=g, dtype=F64)
    p = p / p.sum(-1, keepdim=True)
    bw = BatchWeights(op, p)
    dense = torch.zeros(2, op.num_nodes, op.num_nodes, dtype=F64)
    for b in range(2):
        for z in range(Dz):
            for y in range(H):
                for x in range(W):
                    i = (z * H + y) * W + x
                    valid = [(n, ((z + dz) * H + y + dy) * W + x + dx) for n, (dz, dy, dx) in enumerate(op.offsets)
                             if 0 <= z + dz < Dz and 0 <= y + dy < H and 0 <= x + dx < W]
                    mass = sum(float(p[b, i, n]) for n, _ in valid)
                    for n, k in valid:
                        dense[b, i, k] += p[b, i, n] / mass
    X = torch.randn(2, op.num_nodes, 3, generator=g, dtype=F64)
    assert torch.allclose(bw.to_dense(), dense, atol=1e-15)
    assert torch.allclose(bw.apply(X), dense @ X, atol=1e-14)
    assert torch.allclose(bw.apply_transpose(X), dense.transpose(1, 2) @ X, atol=1e-14)
    with torch.enable_grad():                                    # the differentiable (gather) path
        pg = p.clone().requires_grad_(True)
        assert torch.allclose(BatchWeights(op, pg).apply(X), dense @ X, atol=1e-14)
        assert torch.allclose(BatchWeights(op, pg).apply_transpose(X), dense.transpose(1, 2) @ X, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_head_random_sizes_and_batches(dtype):
    torch.manual_seed(0)
    for spatial_dims, shapes in ((2, [(1, 9, 13), (3, 16, 8)]), (3, [(2, 3, 6, 5)])):
        head = AssignmentFlowHead(5, 3, layers=2, spatial_dims=spatial_dims).to(dtype)
        for n, *spatial in shapes:
            x = torch.randn(n, 5, *spatial, dtype=dtype)
            y = torch.randint(3, (n, *spatial))
            out = head(x)
            assert out.shape == (n, 3, *spatial) and out.dtype == dtype
            assert torch.allclose(out.exp().sum(1), torch.ones(n, *spatial, dtype=dtype), atol=1e-5)
            head.zero_grad()
            torch.nn.functional.nll_loss(out, y).backward()
            assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in head.parameters())
            assert float(head.logits.weight.grad.abs().sum()) > 0


def test_head_checkpointing_keeps_values_and_gradients():
    # activation checkpointing of the predictors and a recomputed Krylov basis change memory, not results
    torch.manual_seed(0)
    plain = AssignmentFlowHead(3, 2, layers=2, spatial_dims=3, neighbourhood=6).double()
    with torch.no_grad():                          # non-uniform patches, so the predictors matter
        for pred in plain.flow.predictors:
            pred.net[-1].weight.normal_()
    lean = AssignmentFlowHead(3, 2, layers=2, spatial_dims=3, neighbourhood=6, checkpoint=True,
                              method=LowRank(recompute_forward=True)).double()
    lean.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 4, 5, 6, dtype=F64, requires_grad=True)
    C = torch.randn(2, 2, 4, 5, 6, dtype=F64)
    outs = []
    for head in (plain, lean):
        x.grad = None
        out = head(x)
        (out * C).sum().backward()
        outs.append((out.detach(), x.grad.clone(), [q.grad.clone() for q in head.parameters()]))
    (o1, gx1, gp1), (o2, gx2, gp2) = outs
    assert rel(o2, o1) < 1e-13 and rel(gx2, gx1) < 1e-12
    assert all(rel(b, a) < 1e-12 for a, b in zip(gp1, gp2))
    assert float(gp1[-1].abs().sum()) > 0


def test_head_after_monai_basic_unet_trains():
    nets = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(0)
    unet = nets.BasicUNet(spatial_dims=2, in_channels=1, out_channels=8, features=(4, 4, 8, 8, 16, 4))
    model = torch.nn.Sequential(unet, AssignmentFlowHead(8, 2, layers=2))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 32, 32, generator=g)
    y = (x[:, 0] > 0.5).long()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.nll_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses


def test_torch_compile_runs_the_flow_eagerly():
    torch._dynamo.reset()
    head = AssignmentFlowHead(4, 2, layers=1)
    x = torch.randn(2, 4, 8, 8)
    compiled = torch.compile(head, backend="eager")
    out = compiled(x)
    assert torch.allclose(out, head(x), atol=1e-6)
    out.sum().backward()
    assert head.logits.weight.grad is not None


def test_bad_inputs_one_line_errors():
    layer = LinearizedAssignmentLayer()
    p, D, _ = inputs(2, 3, (4, 5), 9)
    cases = [
        (UserInputError, lambda: layer(p[:, :7], D), "patches must have shape (2, 9, 4, 5)"),
        (UserInputError, lambda: layer(p, D[0]), "distances must have shape (N, J, H, W)"),
        (UserTypeError, lambda: layer(p.half(), D.half()), "float16"),
        (UserTypeError, lambda: layer(p.numpy(), D), "torch.Tensor"),
        (UserInputError, lambda: layer(2 * p, D), "sum to 1"),
        (UserInputError, lambda: AssignmentFlowHead(4, 1), "num_labels"),
        (UserInputError, lambda: AssignmentFlowHead(4, 2)(torch.randn(1, 4, 3, 3, 3)), "2 spatial axes"),
        (UserInputError, lambda: LinearizedAssignmentLayer(neighbourhood=8), "neighbourhood"),
    ]
    for exc, fn, text in cases:
        with pytest.raises(exc) as e:
            fn()
        msg = str(e.value)
        assert text in msg and "\n" not in msg, (text, msg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_batch_equals_cpu():
    layer = LinearizedAssignmentLayer(rho=0.5, T=2.0)
    p, D, C = inputs(3, 2, (6, 7), 9)
    cpu = grads(layer, p, D, C)
    gpu = grads(layer, p.cuda(), D.cuda(), C.cuda())
    assert gpu[0].device.type == "cuda"
    for a, b in zip(gpu, cpu):
        assert rel(a.cpu(), b) < 1e-10
    head = AssignmentFlowHead(3, 2, spatial_dims=3).cuda()
    assert head(torch.randn(1, 3, 4, 8, 8, device="cuda")).device.type == "cuda"


def test_structures_are_cached_per_shape_and_shared():
    from flowlearn.linearized import layer as module

    layer = LinearizedAssignmentLayer()
    assert layer.structure((4, 5), "cpu") is LinearizedAssignmentLayer().structure((4, 5), "cpu")
    assert isinstance(layer.structure((4, 5), "cpu"), GridWeights)
    assert layer.structure((4, 5), "cpu") is not LinearizedAssignmentLayer(size=5).structure((4, 5), "cpu")
    for n in range(12):
        layer.structure((3, n + 1), "cpu")
    assert len(module._STRUCTURES) <= 8
