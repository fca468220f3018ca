"""KL training: progress on a small model, checkpoint/resume equality, config validation."""

import pytest
import torch

from flowlearn.pgm import MeanField, exact_inference, ising_grid
from flowlearn.randomized import (
    NodeInteraction,
    RandomizedAssignmentFlow,
    TrainingConfig,
    evaluate_flow,
    train_randomized_flow,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def small_setup():
    model = ising_grid(2, 4, field=2.0, coupling=1.5)
    flow = RandomizedAssignmentFlow(8, 2, init_rank=2, init_noise=0.5, initial_logits=-0.5 * model.unary)
    return model, flow


def test_training_reduces_kl_and_beats_mean_field():
    model, flow = small_setup()
    exact = exact_inference(model)
    cfg = TrainingConfig(iterations=150, batch_size=64, lr=3e-2, seed=1, entropy_estimator="score",
                         random_roundings=4)
    res = train_randomized_flow(flow, model, cfg, log_z=exact.log_z)
    assert res.status == "completed" and res.stats["iterations"] == 150
    h = res.series("objective")
    assert len(h) == 150 and sum(h[-25:]) / 25 < sum(h[:25]) / 25
    ev = evaluate_flow(flow, model, exact, num_samples=20000, generator=torch.Generator().manual_seed(0))
    mf = MeanField(50, method="coordinate", iterations=100).fit(model, log_z=exact.log_z)
    assert ev.kl < mf.kl, (ev.kl, mf.kl)
    assert ev.num_samples == 20000


def test_resume_gives_the_same_result(tmp_path):
    cfg = TrainingConfig(iterations=12, batch_size=32, seed=3, checkpoint_every=5, entropy_estimator="score",
                         random_roundings=2, lr_schedule="cosine")
    model, flow_a = small_setup()
    full = train_randomized_flow(flow_a, model, cfg)
    _, flow_b = small_setup()
    ckpt = tmp_path / "ck.pt"
    part = train_randomized_flow(flow_b, model, cfg, checkpoint_path=ckpt, stop_after=7)
    assert part.status == "interrupted" and part.stats["iterations"] == 7
    _, flow_c = small_setup()
    rest = train_randomized_flow(flow_c, model, cfg, checkpoint_path=ckpt, resume=True)
    assert rest.stats["resumed_from"] == 7 and rest.status == "completed"
    for (name, a), (_, c) in zip(flow_a.state_dict().items(), flow_c.state_dict().items()):
        torch.testing.assert_close(a, c, rtol=0, atol=0, msg=name)
    assert rest.series("objective") == full.series("objective")


def test_checkpoint_with_other_config_is_refused(tmp_path):
    model, flow = small_setup()
    ckpt = tmp_path / "ck.pt"
    train_randomized_flow(flow, model, TrainingConfig(iterations=2, batch_size=8), checkpoint_path=ckpt)
    _, fresh = small_setup()
    with pytest.raises(ValueError, match=r"belongs to a different run \(config.batch_size: 8 in the checkpoint, 16"):
        train_randomized_flow(fresh, model, TrainingConfig(iterations=3, batch_size=16), checkpoint_path=ckpt,
                              resume=True)
    other = ising_grid(2, 4, field=2.0, coupling=50.0)  # the `flowlearn ising --coupling 50` case
    with pytest.raises(ValueError, match=r"belongs to a different run \(model: "):
        train_randomized_flow(small_setup()[1], other, TrainingConfig(iterations=3, batch_size=8), checkpoint_path=ckpt,
                              resume=True)
    with pytest.raises(ValueError, match=r"belongs to a different run \(flow.interaction.drive_scale: 'none' in "):
        train_randomized_flow(RandomizedAssignmentFlow(8, 2, init_rank=2, init_noise=0.5, initial_logits=-0.5 * model.unary,
                                                       interaction=NodeInteraction("degree")),
                              model, TrainingConfig(iterations=3, batch_size=8), checkpoint_path=ckpt, resume=True)
    # a constant-rate run may be extended: same model, flow and config but more iterations
    more = train_randomized_flow(small_setup()[1], model, TrainingConfig(iterations=3, batch_size=8),
                                 checkpoint_path=ckpt, resume=True)
    assert more.stats["resumed_from"] == 2 and more.stats["iterations"] == 3
    # the cosine schedule's horizon is its length: not extendable
    ck2 = tmp_path / "cosine.pt"
    train_randomized_flow(small_setup()[1], model, TrainingConfig(iterations=2, batch_size=8, lr_schedule="cosine"),
                          checkpoint_path=ck2)
    with pytest.raises(ValueError, match=r"lr_horizon: 2 in the checkpoint, 3 now"):
        train_randomized_flow(small_setup()[1], model, TrainingConfig(iterations=3, batch_size=8, lr_schedule="cosine"),
                              checkpoint_path=ck2, resume=True)


def test_paper_estimators_run():
    model, flow = small_setup()
    for est in ("samples", "support"):
        res = train_randomized_flow(flow, model, TrainingConfig(iterations=3, batch_size=16, entropy_estimator=est,
                                                                energy_warmup=2))
        assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in res.history)


def test_config_and_model_validation():
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainingConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="entropy_estimator must be one of"):
        TrainingConfig(entropy_estimator="plugin")
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        TrainingConfig(batch_size=1)
    model, _ = small_setup()
    with pytest.raises(ValueError, match="flow has"):
        train_randomized_flow(RandomizedAssignmentFlow(5, 2), model, TrainingConfig(iterations=1))


@pytest.mark.slow
def test_table1_quality():
    """Full-quality Table 1 reproduction (a few minutes): KL below the paper's 0.599."""
    from flowlearn.experiments.table1 import IsingExperimentConfig, run_ising_experiment
    torch.set_num_threads(1)
    res = run_ising_experiment(IsingExperimentConfig(eval_samples=200000, gibbs_samples=20000), show_progress=False)
    assert res.table["randomized_af"]["kl"] < 0.599
    assert abs(res.table["mean_field"]["kl"] - 1.968) < 0.01
