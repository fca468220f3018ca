"""Run identities: every field of every config and strategy object is part of the identity of a run.

A checkpoint is resumed only by the run it belongs to.  Identities are built by
:func:`flowlearn.engine.spec` from declared fields, so a field added to a config or strategy object is
covered without anyone writing it down; these tests fail when a field is missing from an identity
(e.g. ``AMD.max_backtracks``, the S-flow's ``step_size``).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flowlearn.encoding import TrainConfig
from flowlearn.encoding.losses import BCE, GaussianNLL, Masked
from flowlearn.engine import run_identity, spec
from flowlearn.engine.checkpoint import describe_differences
from flowlearn.learning import LabelerConfig
from flowlearn.linearized import AutodiffEuler, AutodiffExpint, LowRank
from flowlearn.solvers import AMD, BB, RK4, Euler, FixedGrid, Nesterov

#: for every config and strategy object: an instance and, per identity field, another valid value
CASES = {
    "AMD": (AMD(), dict(beta=0.5, s0=0.5, smax=5.0, kappa=1.2, max_steps=9, max_backtracks=3, tau=4.0, patience=2,
                        flat_rtol=0.0, gtol=1e-6)),
    "BB": (BB(), dict(s0=0.5, smin=1e-5, smax=10.0, memory=2, c1=0.1, variant="bb1", max_steps=9, max_backtracks=3,
                      patience=2, flat_rtol=0.0, gtol=1e-6)),
    "FixedGrid": (FixedGrid(), dict(method=Euler(), t1=50.0, steps=10, spacing="linear", alpha_decay=True)),
    "Nesterov": (Nesterov(), dict(grid=FixedGrid(RK4(), t1=10.0), eps=0.1)),
    "LowRank": (LowRank(), dict(m=4, rank=2, recompute_forward=True)),
    "AutodiffEuler": (AutodiffEuler(), dict(step_size=0.05)),
    "AutodiffExpint": (AutodiffExpint(), dict(m=4, substeps=2)),
    "TrainConfig": (TrainConfig(), dict(model="ae", solver="bb", adjoint="full", optimizer="adam", lr=1e-3, epochs=2,
                                        images=100, sampling="replacement", batch_size=16, latent_dim=3, seed=1,
                                        t1=50.0, steps=10, grid="linear")),
    "LabelerConfig": (LabelerConfig(), dict(crop=32, batch=3, layers=2, features=4, hidden=8, lr=0.02, rho=0.5, T=2.0,
                                            m=6, rank=2, eval_every=5, seed=1, filter_bank=False, scales=3,
                                            data_term="prototypes", pretrain_steps=5, final_lr_fraction=0.5,
                                            class_balance=0.25, ignore_label=255)),
}


def _identity_fields(obj) -> set:
    return {f.name for f in dataclasses.fields(obj) if f.metadata.get("identity", True)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_field_changes_the_identity(name):
    obj, others = CASES[name]
    assert set(others) == _identity_fields(obj), "every identity field needs an alternative value in CASES"
    base = run_identity("t", part=obj)
    for field, value in others.items():
        changed = run_identity("t", part=dataclasses.replace(obj, **{field: value}))
        assert changed != base, field
        diffs = describe_differences(base, changed, limit=100)
        assert any(d.startswith(f"part.{field}") for d in diffs), (field, diffs)


def test_bookkeeping_fields_do_not_change_the_identity():
    for cfg in (TrainConfig(), LabelerConfig()):
        book = set(f.name for f in dataclasses.fields(cfg)) - _identity_fields(cfg)
        assert {"checkpoint_every", "checkpoint_seconds"} <= book
        for field in book:
            value = getattr(cfg, field)
            changed = dataclasses.replace(cfg, **{field: value * 2 if value else 1})
            assert spec(changed) == spec(cfg)


def test_losses_and_modules_are_identified_by_their_arguments():
    assert spec(GaussianNLL(0.1)) != spec(GaussianNLL(0.2)) and spec(GaussianNLL(0.1)) == spec(GaussianNLL(0.1))
    m1, m2 = torch.ones(4), torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert spec(Masked("bce", m1)) != spec(Masked("bce", m2)) and spec(Masked(BCE(), m1)) == spec(Masked("bce", m1))
    assert spec(Masked("mse", m1)) != spec(Masked("bce", m1))


def test_objects_without_declared_fields_are_refused():
    class Opaque:
        def __init__(self):
            self.x = 1

    with pytest.raises(TypeError, match="Opaque has no declared fields"):
        spec(Opaque())


def test_gfe_trainer_refuses_a_checkpoint_of_another_solver_setting(tmp_path):
    """A run with ``AMD(max_backtracks=3)`` must not continue a run with ``AMD()`` (the field was missing from
    the hand-written ``repr`` that identities were built from)."""
    from flowlearn.encoding import Trainer, load_dataset, training_subset

    data = load_dataset("digits")
    idx = training_subset(data, 32, 0)
    cfg = TrainConfig(model="gfe", epochs=1, batch_size=16, checkpoint_every=1)
    Trainer(cfg, amd=AMD(max_steps=5)).fit(data, idx, out_dir=tmp_path, stop_after=1, desc="t")
    with pytest.raises(ValueError, match=r"different run \(.*max_backtracks: 40 in the checkpoint, 3 now"):
        Trainer(cfg, amd=AMD(max_steps=5, max_backtracks=3)).fit(data, idx, out_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="already exists; pass resume=True .* or overwrite=True"):
        Trainer(cfg, amd=AMD(max_steps=5)).fit(data, idx, out_dir=tmp_path)
    res = Trainer(cfg, amd=AMD(max_steps=5)).fit(data, idx, out_dir=tmp_path, overwrite=True)
    assert res.stats["resumed_from"] == 0


def test_weight_learner_refuses_an_existing_checkpoint_without_resume_or_overwrite(tmp_path):
    from flowlearn.data import make_voronoi
    from flowlearn.learning import LearningProblem, WeightLearner

    v = make_voronoi(12, scenario="boundary", seed=0)
    problem = LearningProblem.from_image(v.image, v.labels, v.prototypes, rho=0.1, T=1.0)
    ck = tmp_path / "ck.pt"
    learner = WeightLearner(LowRank(), optimizer="adam", lr=0.05, iters=2, show_progress=False)
    first = learner.fit(problem, checkpoint=ck)
    with pytest.raises(ValueError, match="ck.pt' already exists; pass resume=True"):
        learner.fit(problem, checkpoint=ck)
    assert learner.fit(problem, checkpoint=ck, resume=True).stats["resumed_from"] == 2
    assert learner.fit(problem, checkpoint=ck, overwrite=True).stats["resumed_from"] == 0
    with pytest.raises(ValueError, match=r"different run \(method.m: 10 in the checkpoint, 4 now"):
        WeightLearner(LowRank(m=4), optimizer="adam", lr=0.05, iters=2, show_progress=False).fit(
            problem, checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        learner.fit(problem, checkpoint=ck, resume=True, overwrite=True)
    assert first.status.name == "COMPLETED"
