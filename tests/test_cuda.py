"""CUDA: device and dtype preservation and agreement with the CPU result (float64, small sizes).

Every test skips without CUDA; ``benchmarks/device_check.sh`` runs them on a GPU machine.  Each test
runs the same computation on the CPU and on ``cuda`` and compares: the GPU result must stay on the
GPU in the input's dtype and equal the CPU result to round-off.
"""

from types import MethodType

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")

CUDA = "cuda"


def _on(x, device):
    assert x.device.type == torch.device(device).type, f"expected a tensor on {device}, got {x.device}"
    return x


def _close(got, ref, rtol=1e-9, atol=1e-11):
    assert got.dtype == ref.dtype, f"dtype {got.dtype} != {ref.dtype}"
    _on(got, CUDA)
    torch.testing.assert_close(got.cpu(), ref, rtol=rtol, atol=atol)


def _voronoi(size=12, scenario="colors", seed=0):
    from flowlearn.data import make_voronoi

    return make_voronoi(size, scenario=scenario, seed=seed)


# ----------------------------------------------------------------------------- geometry
def test_geometry_on_cuda_matches_cpu():
    from flowlearn.geometry import barycenter, egrad2rgrad, entropy, expmap, lift, logmap, proj_tangent, replicator
    from flowlearn.geometry.simplex import inner, lift_inverse, replicator_matrix

    g = torch.Generator().manual_seed(0)
    p = torch.softmax(2 * torch.randn(5, 4, generator=g, dtype=torch.float64), -1)
    v = torch.randn(5, 4, generator=g, dtype=torch.float64)
    q = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), -1)
    pc, vc, qc = p.to(CUDA), v.to(CUDA), q.to(CUDA)
    b = barycenter(5, 4, dtype=torch.float64, device=CUDA)
    assert b.dtype == torch.float64
    _on(b, CUDA)
    _close(b, barycenter(5, 4, dtype=torch.float64))
    for f, args in ((proj_tangent, (v,)), (replicator, (p, v)), (replicator_matrix, (p,)), (lift, (p, v)),
                    (lift_inverse, (p, q)), (expmap, (p, replicator(p, v))), (logmap, (p, q)), (entropy, (p,)),
                    (egrad2rgrad, (p, v)), (inner, (p, v, q))):
        got = f(*(a.to(CUDA) for a in args))
        _close(got, f(*args))
    _close(lift(pc, vc).sum(-1), torch.ones(5, dtype=torch.float64))
    # float32 stays float32 on the device
    assert lift(pc.float(), vc.float()).dtype == torch.float32
    _on(lift(pc.float(), qc.float()), CUDA)


# ----------------------------------------------------------------------------- labeling
@pytest.mark.parametrize("flow", ["full", "linearized"])
def test_label_on_cuda_tensor_matches_cpu(flow):
    from flowlearn.labeling import label

    v = _voronoi(12)
    img = torch.from_numpy(v.image).to(torch.float64)
    ref = label(img, v.prototypes, flow=flow, rho=0.5, T=5.0)
    got = label(img.to(CUDA), v.prototypes, flow=flow, rho=0.5, T=5.0)
    for name in ("assignment", "tangent"):
        _close(getattr(got, name), getattr(ref, name), rtol=1e-8, atol=1e-10)
    _on(got.labels, CUDA)
    assert torch.equal(got.labels.cpu(), ref.labels)
    assert got.status == ref.status and got.steps == ref.steps


def test_flow_classes_keep_device_and_dtype():
    from flowlearn.graphs import GridWeights
    from flowlearn.labeling import (
        AssignmentFlow,
        LinearizedAssignmentFlow,
        distance_matrix,
    )

    v = _voronoi(10)
    D = distance_matrix(torch.from_numpy(v.image).to(torch.float64), v.prototypes)
    for dtype in (torch.float64, torch.float32):
        for make in (lambda w: AssignmentFlow(w, rho=0.5), lambda w: LinearizedAssignmentFlow(w, rho=0.5, T=4.0)):
            ref = make(GridWeights(10, 10, 3, dtype=dtype)).run(D.to(dtype))
            got = make(GridWeights(10, 10, 3, dtype=dtype, device=CUDA)).run(D.to(CUDA, dtype))
            tol = {"rtol": 1e-8, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
            _close(got.assignment, ref.assignment, **tol)


# ----------------------------------------------------------------------------- the layer
@pytest.mark.parametrize("method", ["lowrank", "exact"])
def test_layer_forward_backward_on_cuda_matches_cpu(method):
    from flowlearn.graphs import GridWeights
    from flowlearn.linearized import Exact, LinearizedAssignmentLayer, LowRank

    H = W = 6
    J = 3
    layer = LinearizedAssignmentLayer(GridWeights(H, W, 3, dtype=torch.float64), rho=0.5, T=2.0,
                                      method=LowRank(m=10, rank=1) if method == "lowrank" else Exact())
    g = torch.Generator().manual_seed(1)
    p0 = torch.softmax(torch.randn(H * W, 9, generator=g, dtype=torch.float64), -1)
    d0 = torch.rand(H * W, J, generator=g, dtype=torch.float64)
    go = torch.randn(H * W, J, generator=g, dtype=torch.float64)
    results = {}
    for device in ("cpu", CUDA):
        p = p0.to(device).requires_grad_(True)
        d = d0.to(device).requires_grad_(True)
        V = layer(p, d)
        assert V.device.type == torch.device(device).type and V.dtype == torch.float64
        V.backward(go.to(device))
        results[device] = (V.detach(), p.grad, d.grad)
    for got, ref in zip(results[CUDA], results["cpu"]):
        _close(got, ref, rtol=1e-8, atol=1e-11)
    Wt = layer.assignment(p0.to(CUDA), d0.to(CUDA))
    _on(Wt, CUDA)
    _close(Wt.sum(-1), torch.ones(H * W, dtype=torch.float64))


# ----------------------------------------------------------------------------- weight learning
def test_weight_learner_on_cuda_matches_cpu():
    from flowlearn.learning import LearningProblem, WeightLearner
    from flowlearn.linearized import LowRank

    v = _voronoi(10, scenario="boundary")
    out = {}
    for device in ("cpu", CUDA):
        problem = LearningProblem.from_image(v.image, v.labels, v.prototypes, rho=0.1, T=3.0,
                                             dtype=torch.float64, device=device)
        assert problem.scaled_distances.device.type == torch.device(device).type
        res = WeightLearner(LowRank(), optimizer="adam", lr=0.05, iters=3, show_progress=False).fit(problem)
        assert res.patches.device.type == torch.device(device).type and res.patches.dtype == torch.float64
        out[device] = res
    _close(out[CUDA].patches, out["cpu"].patches, rtol=1e-8, atol=1e-11)
    losses = [h["loss"] for h in out[CUDA].history]
    np.testing.assert_allclose(losses, [h["loss"] for h in out["cpu"].history], rtol=1e-8)
    assert out[CUDA].final["label_error"] == pytest.approx(out["cpu"].final["label_error"])


# ----------------------------------------------------------------------------- randomized flows
def _cpu_noise(flow, seed=0):
    """Draw the flow's Gaussian noise from one CPU generator (so CPU and CUDA runs see the same numbers)."""
    gen = torch.Generator().manual_seed(seed)

    def noise(self, shape, generator):
        return torch.randn(shape, generator=gen, dtype=self.dtype).to(self.device)

    flow._noise = MethodType(noise, flow)
    return flow


def _ising_flow(device):
    from flowlearn.pgm import ising_grid
    from flowlearn.randomized import RandomizedAssignmentFlow

    model = ising_grid(2, 3, field=3.0, coupling=2.1, dtype=torch.float64, device=device)
    flow = RandomizedAssignmentFlow(model.num_nodes, model.num_labels, init_rank=2, init_noise=0.5,
                                    initial_logits=-0.5 * model.unary, dtype=torch.float64, device=device)
    return model, flow


def test_train_randomized_flow_on_cuda_matches_cpu():
    from flowlearn.randomized import TrainingConfig, train_randomized_flow

    cfg = TrainingConfig(iterations=4, batch_size=16, lr=1e-2, entropy_estimator="support", random_roundings=0)
    out = {}
    for device in ("cpu", CUDA):
        model, flow = _ising_flow(device)
        res = train_randomized_flow(_cpu_noise(flow), model, cfg, show_progress=False)
        assert res.flow.device.type == torch.device(device).type and res.flow.dtype == torch.float64
        out[device] = res
    for key in ("objective", "energy", "entropy"):
        np.testing.assert_allclose(out[CUDA].series(key), out["cpu"].series(key), rtol=1e-8, atol=1e-10)
    ref = dict(out["cpu"].flow.named_parameters())
    for name, p in out[CUDA].flow.named_parameters():
        _close(p.detach(), ref[name].detach(), rtol=1e-8, atol=1e-10)


def test_randomized_flow_default_estimator_and_sampling_on_cuda():
    from flowlearn.pgm import exact_inference
    from flowlearn.randomized import TrainingConfig, evaluate_flow, train_randomized_flow

    model, flow = _ising_flow(CUDA)
    res = train_randomized_flow(flow, model, TrainingConfig(iterations=3, batch_size=32, entropy_estimator="score",
                                                            random_roundings=2), show_progress=False)
    assert all(np.isfinite(res.series("objective")))
    gen = torch.Generator(device=CUDA).manual_seed(0)
    samples = flow.sample(100, gen)
    _on(samples, CUDA)
    assert samples.dtype == torch.long and samples.shape == (100, 6)
    exact = exact_inference(model)
    ev = evaluate_flow(flow, model, exact, num_samples=2000, generator=gen)
    assert np.isfinite(ev.kl) and ev.kl >= -0.05


# ----------------------------------------------------------------------------- GFE training
def test_gfe_trainer_on_cuda_matches_cpu():
    from flowlearn.encoding import TrainConfig, Trainer, load_dataset, training_subset

    data = load_dataset("digits", val_size=16, dtype=torch.float64)
    idx = training_subset(data, 32, 0)
    cfg = TrainConfig(model="gfe", epochs=1, batch_size=16, eval_every=2, seed=1)
    ref = Trainer(cfg).fit(data, idx)
    got = Trainer(cfg, device=CUDA).fit(data, idx)
    params = dict(ref.module.named_parameters())
    for name, p in got.module.named_parameters():
        assert p.dtype == torch.float64
        _close(p.detach(), params[name].detach(), rtol=1e-6, atol=1e-8)
    assert got.val_bce == pytest.approx(ref.val_bce, rel=1e-6)
    assert got.stats["steps"] == ref.stats["steps"] == 2
