"""The contract every trainer keeps, checked once for all of them.

For each trainer -- weight learning, the Sect. 4.4 predictor, the labeler, the GFE trainer and the
randomized-flow trainer --

* a run stopped after ``k`` steps and resumed ends bit for bit where an uninterrupted run ends;
* an existing checkpoint is refused unless ``resume=True`` or ``overwrite=True``;
* resuming with one changed field of a config or strategy object is refused, naming the field.

(Data-parallel runs under ``torchrun`` equal one process: ``tests/test_labeler.py``,
``tests/test_encoding_training.py``, ``tests/test_reliability_runs.py``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch

from flowlearn.status import Status


@dataclass
class Case:
    """``run(variant, **fit_kwargs) -> (result, state dict of what was trained)``; ``variant`` in
    ``{"base", "changed"}`` where ``changed`` alters one identity field named ``field``."""

    run: Callable
    field: str
    iterations: int


def _weight_learner():
    from flowlearn.data import make_voronoi
    from flowlearn.learning import LearningProblem, WeightLearner
    from flowlearn.linearized import LowRank

    v = make_voronoi(12, scenario="boundary", seed=0)
    problem = LearningProblem.from_image(v.image, v.labels, v.prototypes, rho=0.1, T=1.0)

    def run(variant, *, checkpoint=None, **kw):
        method = LowRank(m=10) if variant == "base" else LowRank(m=6)
        res = WeightLearner(method, optimizer="adam", lr=0.05, iters=5, checkpoint_every=1,
                            show_progress=False).fit(problem, checkpoint=checkpoint, **kw)
        return res, {"patches": res.patches}

    return Case(run, "method.m", 5)


def _predictor():
    from flowlearn.data import make_voronoi
    from flowlearn.learning import PatchPredictor, PredictorTrainer
    from flowlearn.learning.predictor import make_sample
    from flowlearn.linearized import LowRank

    samples = [make_sample(v.image, v.labels, v.prototypes, rho=0.1, T=1.0)
               for v in (make_voronoi(10, scenario="boundary", seed=s) for s in (0, 1))]

    def run(variant, *, checkpoint=None, **kw):
        torch.manual_seed(0)
        pred = PatchPredictor(num_prototypes=4, feature_dim=samples[0].features.shape[1], dtype=torch.float64)
        rank = 1 if variant == "base" else 2
        res = PredictorTrainer(LowRank(rank=rank), lr=0.05, iters=4, checkpoint_every=1,
                               show_progress=False).fit(pred, samples, checkpoint=checkpoint, **kw)
        return res, pred.state_dict()

    return Case(run, "method.rank", 4)


def _labeler():
    from flowlearn.learning import LabelerConfig, LabelerTrainer

    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(3, 20, 20, generator=g) > 0.7).long()
    images = (labels.float() + 0.3 * torch.randn(3, 20, 20, generator=g)).unsqueeze(-1)

    def run(variant, *, checkpoint=None, **kw):
        cfg = LabelerConfig(crop=12, batch=2, layers=1, features=2, hidden=4, scales=2, iterations=4, eval_every=2,
                            checkpoint_every=1, checkpoint_seconds=0, T=1.0 if variant == "base" else 2.0)
        model, res = LabelerTrainer(cfg, show_progress=False).fit(images, labels, [0, 1], [2], checkpoint=checkpoint,
                                                                  **kw)
        return res, model.state_dict()

    return Case(run, "config.T", 4)


def _gfe():
    from flowlearn.encoding import TrainConfig, Trainer, load_dataset, training_subset
    from flowlearn.solvers import AMD

    data = load_dataset("digits")
    idx = training_subset(data, 48, 0)

    def run(variant, *, checkpoint=None, **kw):
        amd = AMD(max_steps=4) if variant == "base" else AMD(max_steps=4, kappa=1.3)
        cfg = TrainConfig(model="gfe", epochs=1, batch_size=16, checkpoint_every=1, eval_every=1)
        out = None if checkpoint is None else checkpoint.parent
        res = Trainer(cfg, amd=amd).fit(data, idx, out_dir=out, desc="t", **kw)
        return res, res.module.state_dict()

    return Case(run, "amd.kappa", 3)


def _randomized():
    from flowlearn.pgm import ising_grid
    from flowlearn.randomized import RandomizedAssignmentFlow, TrainingConfig, train_randomized_flow

    model = ising_grid(2, 3, field=1.0, coupling=0.5)

    def run(variant, *, checkpoint=None, **kw):
        torch.manual_seed(0)
        flow = RandomizedAssignmentFlow(model.num_nodes, model.num_labels,
                                        step_size=0.1 if variant == "base" else 0.2, dtype=torch.float64)
        cfg = TrainingConfig(iterations=5, batch_size=8, seed=1, checkpoint_every=1, checkpoint_seconds=0)
        res = train_randomized_flow(flow, model, cfg, checkpoint_path=checkpoint, show_progress=False, **kw)
        return res, flow.state_dict()

    return Case(run, "step_size", 5)


CASES = {"weight_learner": _weight_learner, "predictor": _predictor, "labeler": _labeler, "gfe": _gfe,
         "randomized": _randomized}


@pytest.fixture(params=sorted(CASES))
def case(request):
    return CASES[request.param]()


def _equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_stopped_and_resumed_equals_uninterrupted(case, tmp_path):
    full, full_state = case.run("base")
    ck = tmp_path / "checkpoint.pt"
    part, _ = case.run("base", checkpoint=ck, stop_after=2)
    assert part.status is Status.INTERRUPTED and part.stats["iterations"] == 2
    rest, rest_state = case.run("base", checkpoint=ck, resume=True)
    assert rest.status is Status.COMPLETED and rest.stats["resumed_from"] == 2
    assert rest.stats["iterations"] == full.stats["iterations"] == case.iterations
    _equal(rest_state, full_state)


def test_existing_checkpoint_needs_resume_or_overwrite(case, tmp_path):
    ck = tmp_path / "checkpoint.pt"
    case.run("base", checkpoint=ck, stop_after=1)
    with pytest.raises(ValueError, match="already exists; pass resume=True to continue that run or overwrite=True"):
        case.run("base", checkpoint=ck)
    res, _ = case.run("base", checkpoint=ck, overwrite=True)
    assert res.stats["resumed_from"] == 0 and res.status is Status.COMPLETED


def test_changed_field_is_refused_by_name(case, tmp_path):
    ck = tmp_path / "checkpoint.pt"
    case.run("base", checkpoint=ck, stop_after=1)
    with pytest.raises(ValueError, match=rf"belongs to a different run \(.*{case.field.replace('.', '[.]')}: "):
        case.run("changed", checkpoint=ck, resume=True)
