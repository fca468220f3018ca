"""`flowlearn ising` beyond Table 1: both roundings scored, any grid and any c (Potts), random fields,
exact reference by transfer matrix when feasible, a labelled Gibbs reference otherwise, PNG legends."""

import json

import pytest
import torch

from flowlearn._checks import UserInputError
from flowlearn.cli.main import main
from flowlearn.experiments.table1 import IsingExperimentConfig, run_ising_experiment
from flowlearn.pgm import exact_inference_auto, ising_grid
from flowlearn.randomized import RandomizedAssignmentFlow, evaluate_flow, evaluate_flow_roundings
from flowlearn.randomized.plots import label_legend
from flowlearn.randomized.sampling import integral_fraction

D = torch.float64
QUICK = dict(iterations=10, batch_size=32, eval_samples=2000, gibbs_samples=2000, gibbs_chains=100,
             mean_field_restarts=10, mean_field_iterations=20, mean_field_sweeps=10, reference_samples=20000,
             reference_chains=200, reference_burn_in=100)


@pytest.fixture(autouse=True)
def keep_threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def test_default_rounding_is_random_and_both_roundings_share_the_soft_points():
    model = ising_grid(2, 3, 1.0, 1.0, dtype=D)
    exact = exact_inference_auto(model)
    f = RandomizedAssignmentFlow(6, 2, init_noise=1.0, dtype=D)
    rows, stats = evaluate_flow_roundings(f, model, exact, num_samples=3000, generator=torch.Generator().manual_seed(0))
    assert set(rows) == {"random", "argmax"} and 0 <= stats["integral_fraction"] <= 1
    single = evaluate_flow(f, model, exact, num_samples=3000, generator=torch.Generator().manual_seed(0))
    assert single.kl == pytest.approx(rows["random"].kl, abs=1e-12)  # default rounding = "random"
    assert IsingExperimentConfig().rounding == "random"


def test_integral_end_points_make_the_roundings_agree():
    f = RandomizedAssignmentFlow(4, 2, init_noise=1.0, end_time=60.0, step_size=0.5, mean_init=0.5, dtype=D)
    log_s = f(500, torch.Generator().manual_seed(0))
    frac = float(integral_fraction(log_s, 1e-6).double().mean())
    assert frac > 0.95
    g = torch.Generator().manual_seed(1)
    agree = (f.round(log_s, "random", g) == f.round(log_s, "argmax")).all(1).double().mean()
    assert float(agree) >= frac - 0.01


def test_potts_model_with_random_fields():
    cfg = IsingExperimentConfig(rows=3, cols=4, labels=3, field=1.0, field_noise=1.0, seed=5, coupling=0.8)
    m = cfg.build_model()
    assert (m.num_nodes, m.num_labels) == (12, 3)
    again = IsingExperimentConfig(rows=3, cols=4, labels=3, field=1.0, field_noise=1.0, seed=5, coupling=0.8)
    assert torch.equal(m.unary, again.build_model().unary)
    assert torch.equal(m.unary[:, 1:], torch.zeros(12, 2, dtype=D))
    plain = IsingExperimentConfig().build_model()
    ref = ising_grid(3, 8, 3.0, 2.1, dtype=D)
    assert torch.equal(plain.unary, ref.unary) and torch.equal(plain.edges, ref.edges)
    assert cfg.exact_method() == "transfer"
    assert IsingExperimentConfig(rows=20, cols=20).exact_method() is None  # 2**20 column states: Gibbs reference


@pytest.mark.parametrize("kwargs,match", [
    ({"labels": 1}, "labels must be >= 2"),
    ({"field_noise": -0.5}, "field_noise"),
    ({"rows": 20, "cols": 20, "reference": "exact"}, "not feasible"),
    ({"reference": "bp"}, "reference must be one of"),
    ({"interaction": "label"}, "interaction must be one of"),
    ({"integral_tolerance": 1.0}, "integral_tolerance"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(UserInputError, match=match):
        IsingExperimentConfig(**kwargs)


def test_gibbs_reference_is_labelled_and_close_to_exact():
    cfg = IsingExperimentConfig(rows=2, cols=3, labels=3, field=1.0, coupling=0.8, reference="gibbs",
                                interaction="sparse", **QUICK)
    res = run_ising_experiment(cfg, show_progress=False)
    assert res.reference_name == "gibbs_reference" and "exact" not in res.table
    assert all(row["kl"] is None for row in res.table.values())
    assert "free_energy" in res.table["randomized_af"] and "randomized_af_argmax" in res.table
    ref = res.extra["reference"]
    assert ref["method"] == "gibbs" and ref["marginal_standard_error_mean"] > 0
    exact = exact_inference_auto(res.model)
    err = float((res.exact.marginals - exact.marginals).abs().max())
    assert err < 10 * ref["marginal_standard_error_max"] + 1e-3


def test_cli_potts_grid_writes_legend_and_both_rows(tmp_path, capsys):
    out = tmp_path / "potts"
    args = ["ising", "--rows", "2", "--cols", "4", "--labels", "3", "--field-noise", "0.5", "--seed", "2",
            "--iters", "8", "--batch-size", "32", "--eval-samples", "2000", "--gibbs-samples", "1000",
            "--mf-restarts", "5", "--mean-field-iterations", "10", "--mean-field-sweeps", "5",
            "--interaction", "sparse", "--drive-scale", "degree", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    data = json.loads((out / "table.json").read_text())
    assert {"exact", "randomized_af", "randomized_af_argmax"} <= set(data["table"])
    assert data["config"]["labels"] == 3 and data["details"]["reference"]["method"] == "transfer"
    assert "integral samples" in capsys.readouterr().out
    assert (out / "samples.png").is_file()
    assert "2: red" in label_legend(3) and "repeat" in label_legend(10)
