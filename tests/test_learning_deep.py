"""Deep linearized assignment flows (eq. (1.6)): end-to-end gradients against a dense autograd reference."""

import pytest
import torch

from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.data import make_voronoi
from flowlearn.graphs import GridWeights
from flowlearn.labeling import LinearizedFlowSequence
from flowlearn.learning.deep import (
    ConvPatchPredictor,
    DeepLinearizedFlow,
    FreePatches,
    PrototypeDistances,
    assignment_nll,
)
from flowlearn.linearized import DenseAutograd, Exact, LowRank


def rel(a, b):
    a, b = a.detach(), b.detach()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def cosine(a, b):
    return float((a * b).sum() / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)))


def make_problem(h=6, w=6, J=3, C=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.rand(1, C, h, w, generator=g)
    protos = torch.rand(J, C, generator=g)
    labels = torch.randint(0, J, (1, h, w), generator=g)
    return feats, protos, labels


def make_flow(method, h=6, w=6, J=3, C=2, protos=None, seed=0):
    torch.manual_seed(seed)
    preds = [ConvPatchPredictor(C + J, 9, hidden=4, init_scale=1.0) for _ in range(3)]
    return DeepLinearizedFlow(preds, rho=0.2, T=[1.0, 2.0, 1.5], method=method,
                              feed_assignment=True, distances=PrototypeDistances(protos, feature_map=True))


def all_grads(flow, feats, labels):
    flow.zero_grad()
    out = flow(feats)
    g = torch.Generator().manual_seed(9)
    loss = assignment_nll(out, labels) + (out.tangents[1] * torch.randn(out.tangents[1].shape, generator=g)).sum()
    loss.backward()
    return {n: p.grad.clone() for n, p in flow.named_parameters()}, out


def test_three_layer_flow_gradients_equal_dense_autograd():
    feats, protos, labels = make_problem()
    ref_flow = make_flow(DenseAutograd(), protos=protos)
    ref, out_ref = all_grads(ref_flow, feats, labels)
    assert len(ref) == 3 * 6 + 2                             # 3 predictors x (3 convs x (w, b)) + data term
    k = 6 * 6 * 3
    for method in (Exact(), LowRank(m=k, rank=k), LowRank(m=k, rank=k, recompute_forward=True)):
        flow = make_flow(method, protos=protos)
        flow.load_state_dict(ref_flow.state_dict())
        got, out = all_grads(flow, feats, labels)
        assert rel(out.assignment, out_ref.assignment) < 1e-10
        for name, g in ref.items():
            assert float(torch.linalg.vector_norm(g)) > 0, name
            assert rel(got[name], g) < 1e-8, (method, name, rel(got[name], g))
    flow = make_flow(LowRank(), protos=protos)                 # the default m = 10, r = 1
    flow.load_state_dict(ref_flow.state_dict())
    got, _ = all_grads(flow, feats, labels)
    flat = lambda d: torch.cat([v.reshape(-1) for v in d.values()])
    assert cosine(flat(got), flat(ref)) >= 0.999


def test_equal_weights_reproduce_the_linearized_flow_sequence():
    v = make_voronoi(8, scenario="colors", seed=1)
    img = torch.from_numpy(v.image)
    op = GridWeights(8, 8, 3)
    D = ((img.reshape(-1, 1, img.shape[-1]) - torch.as_tensor(v.prototypes).reshape(1, -1, img.shape[-1])) ** 2).sum(-1)
    flow = DeepLinearizedFlow([FreePatches((8, 8)) for _ in range(4)], rho=0.5, T=1.5, method=Exact())
    out = flow(img.permute(2, 0, 1)[None], D.T.reshape(1, -1, 8, 8))
    seq = LinearizedFlowSequence(op, rho=0.5, interval=1.5, max_intervals=4, entropy_tol=1e-300).run(D)
    assert seq.steps == 4
    assert rel(out.assignment[0].reshape(D.shape[1], -1).T, seq.assignment) < 1e-8


def test_training_decreases_the_loss_float32():
    v = make_voronoi(16, scenario="boundary", seed=0)
    img = torch.from_numpy(v.image).float().permute(2, 0, 1)[None]
    labels = torch.from_numpy(v.labels)[None]
    C, J = img.shape[1], len(v.prototypes)
    torch.manual_seed(0)
    flow = DeepLinearizedFlow([ConvPatchPredictor(C + J, 9, hidden=8) for _ in range(2)], rho=0.1, T=1.0,
                              feed_assignment=True,
                              distances=PrototypeDistances(torch.as_tensor(v.prototypes).float()))
    flow = flow.float()
    opt = torch.optim.Adam(flow.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        out = flow(img)
        loss = assignment_nll(out, labels)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert out.assignment.dtype == torch.float32 and all(t.dtype == torch.float32 for t in out.tangents)
    assert all(p.grad.dtype == torch.float32 for p in flow.parameters())
    assert losses[-1] < 0.8 * losses[0]


def test_bad_configuration_and_inputs():
    with pytest.raises(UserInputError, match="one per layer"):
        DeepLinearizedFlow([FreePatches((4, 4)), FreePatches((4, 4))], T=[1.0])
    with pytest.raises(UserTypeError, match="non-empty"):
        DeepLinearizedFlow([])
    with pytest.raises(UserTypeError, match="method"):
        DeepLinearizedFlow([FreePatches((4, 4))], method="exact")
    with pytest.raises(UserInputError, match="T\\[0\\]"):
        DeepLinearizedFlow([FreePatches((4, 4))], T=[0.0])
    flow = DeepLinearizedFlow([FreePatches((4, 5))])
    with pytest.raises(UserInputError, match="patches must have shape"):
        flow(torch.rand(1, 1, 4, 4), torch.rand(1, 3, 4, 4))
    with pytest.raises(UserInputError, match="distances must be a tensor"):
        flow(torch.rand(1, 1, 4, 4), torch.rand(16, 3))
    with pytest.raises(UserInputError, match="distances are required"):
        DeepLinearizedFlow([FreePatches((4, 4))])(torch.rand(1, 1, 4, 4))
