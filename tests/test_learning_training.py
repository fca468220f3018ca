"""Optimizers on the patch simplices, the training loop (checkpoint/resume), fast Krylov kernels, predictor."""

import numpy as np
import pytest
import torch

from flowlearn.data import make_voronoi
from flowlearn.geometry import lift
from flowlearn.graphs import GridWeights
from flowlearn.learning import LearningProblem, RiemannianSGD, SimplexAdam, WeightLearner
from flowlearn.learning.losses import assignment_kl, assignment_kl_grad, patch_regularizer, patch_regularizer_grad
from flowlearn.linearized import LowRank
from flowlearn.learning.predictor import PatchPredictor, PredictorTrainer, clean_windows, make_sample
from flowlearn.solvers.arnoldi import arnoldi


def voronoi_problem(size=16, scenario="boundary", seed=0, dtype=torch.float64, T=5.0):
    v = make_voronoi(size, scenario=scenario, seed=seed)
    return LearningProblem.from_image(v.image, v.labels, v.prototypes, rho=0.1, T=T, dtype=dtype), v


def test_loss_and_regularizer_gradients_match_autograd():
    g = torch.Generator().manual_seed(0)
    V = torch.randn(20, 4, generator=g, requires_grad=True)
    labels = torch.randint(0, 4, (20,), generator=g)
    (ref,) = torch.autograd.grad(assignment_kl(V, labels), V)
    assert torch.allclose(assignment_kl_grad(V.detach(), labels), ref, atol=1e-14)
    p = torch.softmax(torch.randn(20, 9, generator=g), 1).requires_grad_(True)
    (ref,) = torch.autograd.grad(patch_regularizer(p, 0.3), p)
    assert torch.allclose(patch_regularizer_grad(p.detach(), 0.3), ref, atol=1e-12)
    uniform = torch.full((3, 9), 1 / 9)
    assert float(patch_regularizer(uniform, 1.0)) == pytest.approx(0.0, abs=1e-24)


def test_rgd_step_is_the_lifting_map_and_descends():
    prob, _ = voronoi_problem(12)
    method = LowRank()
    p = prob.weights.patches.clone()
    r = prob.evaluate(p, method)
    h = 0.2 * prob.weights.num_nodes
    opt = RiemannianSGD([p], lr=h)
    p.grad = r.grad
    expected = lift(p.detach().clone(), -h * r.grad).clamp(min=1e-12)  # floor of the optimizer
    expected = expected / expected.sum(1, keepdim=True)
    opt.step()
    assert torch.allclose(p, expected, rtol=1e-12, atol=1e-15)
    assert torch.allclose(p.sum(1), torch.ones(p.shape[0]))
    assert prob.evaluate(p, method).loss < r.loss


def test_simplex_adam_keeps_rows_on_simplex_and_descends():
    prob, _ = voronoi_problem(12)
    method = LowRank()
    p = prob.weights.patches.clone()
    opt = SimplexAdam([p], lr=0.05)
    losses = []
    for _ in range(5):
        r = prob.evaluate(p, method)
        losses.append(r.loss)
        p.grad = r.grad
        opt.step()
    assert losses[-1] < losses[0]
    assert bool((p > 0).all()) and torch.allclose(p.sum(1), torch.ones(p.shape[0]))
    with pytest.raises(ValueError, match="betas"):
        SimplexAdam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        RiemannianSGD([p], lr=0.0)


def test_training_reduces_error_and_resume_matches_uninterrupted(tmp_path):
    prob, _ = voronoi_problem(16, "colors", seed=3)
    full = WeightLearner(LowRank(), optimizer="adam", lr=0.05, iters=6, show_progress=False).fit(prob)
    assert full.history[-1]["loss"] < full.history[0]["loss"]
    assert full.final["label_error"] <= full.history[0]["label_error"]
    assert [h["iteration"] for h in full.history] == list(range(6))
    ckpt = tmp_path / "ckpt.pt"
    WeightLearner(LowRank(), optimizer="adam", lr=0.05, iters=4, checkpoint_every=2,
                  show_progress=False).fit(prob, checkpoint=ckpt)
    resumed = WeightLearner(LowRank(), optimizer="adam", lr=0.05, iters=6, checkpoint_every=2,
                            show_progress=False).fit(prob, checkpoint=ckpt, resume=True)
    assert resumed.stats["resumed_from"] == 4
    assert torch.allclose(resumed.patches, full.patches, atol=1e-14)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-12)
    with pytest.raises(ValueError, match=r"belongs to a different run \(config.lr: 0.05 in the checkpoint, 1.0 now; config.optimizer: 'adam'"):
        WeightLearner(LowRank(), optimizer="rgd", iters=6, show_progress=False).fit(prob, checkpoint=ckpt,
                                                                                    resume=True)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        WeightLearner(LowRank(), optimizer="sgd")


def test_float32_training_keeps_dtype():
    prob, _ = voronoi_problem(12, dtype=torch.float32)
    res = WeightLearner(LowRank(), optimizer="adam", lr=0.05, iters=2, show_progress=False).fit(prob)
    assert res.patches.dtype == torch.float32


def test_problem_stencil_is_the_shared_csr_pattern_of_the_operator():
    """The CSR kernels themselves are tested in tests/test_graphs.py and tests/test_krylov_paths.py."""
    prob, _ = voronoi_problem(12)
    op = prob.operator(prob.weights.patches.clone())
    assert prob.stencil() is op.sparse_pattern()  # built once per problem, shared by every operator
    omega, omega_t = op.sparse_operator()
    X = torch.randn(prob.weights.num_nodes, 3)
    assert torch.allclose(omega @ X, op.apply(X), atol=1e-14)
    assert torch.allclose(omega_t @ X, op.apply_transpose(X), atol=1e-14)
    system = prob.system(prob.weights.patches)
    with torch.no_grad():
        big = arnoldi(system.matvec, system.B, 10)
    assert big.stats["path"] == "block"
    Q = torch.stack([q.reshape(-1) for q in big.basis])
    assert torch.allclose(Q @ Q.T, torch.eye(big.dim), atol=1e-13)


def test_problem_validation_errors():
    op = GridWeights(4, 4, 3)
    D = torch.rand(16, 3)
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        LearningProblem.build(op, D, torch.full((16,), 3))
    with pytest.raises(ValueError, match="labels must have 16 entries"):
        LearningProblem.build(op, D, torch.zeros(15, dtype=torch.long))
    with pytest.raises(TypeError, match="labels must be integers"):
        LearningProblem.build(op, D, torch.zeros(16))
    with pytest.raises(ValueError, match="T must be finite and > 0"):
        LearningProblem.build(op, D, torch.zeros(16, dtype=torch.long), T=0.0)
    with pytest.raises(ValueError, match="distances must have 16 rows"):
        LearningProblem.build(op, D[:5], torch.zeros(16, dtype=torch.long))


def test_predictor_initialisation_and_training_reduce_test_error():
    vs = [make_voronoi(24, scenario="boundary", seed=s) for s in range(3)]
    train = [make_sample(v.image, v.labels, v.prototypes, rho=0.1, T=5.0) for v in vs[:2]]
    test = [make_sample(vs[2].image, vs[2].labels, vs[2].prototypes, rho=0.1, T=5.0)]
    wins = [clean_windows(v.clean, v.labels) for v in vs[:2]]
    pred = PatchPredictor(10, feature_dim=9).initialize(torch.cat([w[0] for w in wins]),
                                                        torch.cat([w[1] for w in wins]))
    patches = pred(test[0].features)
    assert patches.shape == (576, 9) and torch.allclose(patches.sum(1), torch.ones(576))
    assert torch.allclose(pred.nu.sum(1), torch.zeros(10), atol=1e-12)  # tangent vectors
    before = PredictorTrainer.evaluate(pred, train)
    res = PredictorTrainer(lr=0.05, iters=5, show_progress=False).fit(pred, train, test)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert np.mean(res.final["train_errors"]) <= np.mean(before)
    with pytest.raises(ValueError, match=r"features must have shape \(I, 9\)"):
        pred(torch.zeros(5, 4))
