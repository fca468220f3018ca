"""Issue 12 items 2, 3, 8: exact image counts, the subset/seen protocols, the baselines in compare, pictures."""

import argparse
import json

import pytest
import torch

from flowlearn.cli import gfe as gfe_cli
from flowlearn.encoding import TrainConfig, Trainer, load_dataset, training_subset
from flowlearn.encoding.plots import class_spread_sample
from flowlearn.encoding.schedule import BatchSchedule
from flowlearn.experiments.gfe_data_efficiency import COMPARE_ROWS, compare

pytestmark = pytest.mark.usefixtures("one_thread")


def test_schedule_counts_are_exact():
    s = BatchSchedule(4, 3, seed=1, images=10)
    sizes = [len(s.batch(k)) for k in range(s.total_steps)]
    assert s.total_steps == 5 and sum(sizes) == 10 and s.images_after(s.total_steps) == 10
    assert [s.images_after(k) for k in range(6)] == [0, 3, 4, 7, 8, 10]
    first_pass = torch.cat([s.batch(0), s.batch(1)])
    assert sorted(first_pass.tolist()) == [0, 1, 2, 3]            # a pass is a permutation
    r = BatchSchedule(100, 3, seed=1, images=7, sampling="replacement")
    batches = [r.batch(k) for k in range(r.total_steps)]
    assert [len(b) for b in batches] == [3, 3, 1] and r.images_after(3) == 7
    assert all(0 <= int(i) < 100 for b in batches for i in b)
    assert torch.equal(r.batch(1), BatchSchedule(100, 3, seed=1, images=7, sampling="replacement").batch(1))
    old = BatchSchedule(5, 2, seed=3, epochs=2)                   # epochs without images: unchanged rule
    assert old.total_steps == 6 and old.images_after(6) == 10


@pytest.mark.parametrize("sampling", ["epochs", "replacement"])
def test_trainer_sees_exactly_the_images_asked(sampling):
    d = load_dataset("digits", dtype=torch.float64)
    cfg = TrainConfig(model="ae", batch_size=8, images=21, sampling=sampling, eval_every=1)
    res = Trainer(cfg).fit(d, training_subset(d, 16, 0))
    assert res.stats["images_seen"] == 21 and res.stats["steps"] == 3
    assert [h["images_seen"] for h in res.history] == [8, 16, 21]
    with pytest.raises(ValueError, match="sampling"):
        TrainConfig(sampling="bootstrap")
    with pytest.raises(ValueError, match="images"):
        TrainConfig(images=0)


def test_compare_seen_protocol_all_baselines(tmp_path):
    d = load_dataset("digits", dtype=torch.float32)
    logs = []
    models = ["ae", "gfe-amd", "gfe-bb", "auto-decoder"]
    table = compare(d, [6, 10], 1, tmp_path, base=TrainConfig(batch_size=4, eval_every=1), protocol="seen",
                    models=models, log=logs.append)
    assert table["models"] == list(COMPARE_ROWS) and table["protocol"]["protocol"] == "seen"
    for size in ("6", "10"):
        for m in COMPARE_ROWS:
            assert table["rows"][size][m]["n_seeds"] == 1 and 0 < table["rows"][size][m]["mean"] < 1
    for path in (tmp_path / "cells").glob("seen_N*.json"):
        rec = json.loads(path.read_text())
        assert rec["stats"]["images_seen"] == rec["size"] and rec["config"]["sampling"] == "replacement"
        assert rec["stats"]["train_size"] == len(d.train)          # drawn from the whole pool
    assert len(list((tmp_path / "cells").glob("seen_N*.json"))) == 8
    assert (tmp_path / "reconstructions_N6.png").exists() and (tmp_path / "curves_N10.png").exists()
    ae = json.loads((tmp_path / "cells" / "seen_N6_s0_ae.json").read_text())
    assert ae["refined_val_bce"] <= ae["val_bce"] + 1e-6          # AMD from the encoder's code never worse
    ad = json.loads((tmp_path / "cells" / "seen_N6_s0_ad.json").read_text())
    assert ad["config"]["solver"] == "euler" and ad["config"]["t1"] / ad["config"]["steps"] == 3.0


def test_compare_subset_protocol_takes_images_literally(tmp_path):
    d = load_dataset("digits", dtype=torch.float32)
    compare(d, [8], 1, tmp_path, base=TrainConfig(batch_size=4, eval_every=100), images=10, log=lambda s: None)
    for name in ("N8_s0_ae.json", "N8_s0_gfe.json"):
        rec = json.loads((tmp_path / "cells" / name).read_text())
        assert rec["stats"]["images_seen"] == 10 and rec["stats"]["train_size"] == 8   # not rounded up to 16
    with pytest.raises(ValueError, match="protocol"):
        compare(d, [8], 1, tmp_path / "x", protocol="all")
    with pytest.raises(ValueError, match="models entry"):
        compare(d, [8], 1, tmp_path / "y", models=["vae"])


def test_class_spread_sample_covers_every_class():
    d = load_dataset("digits")
    idx = class_spread_sample(d, 12)
    assert len(idx) == 12 and set(d.val_labels[idx[:10]].tolist()) == set(range(10))


def test_cli_compare_seen(tmp_path, capsys):
    p = argparse.ArgumentParser()
    gfe_cli.register(p.add_subparsers(dest="command"))
    out = tmp_path / "cmp"
    args = p.parse_args(["gfe", "compare", "--protocol", "seen", "--train-sizes", "5000", "--seeds", "1",
                         "--models", "ae,auto-decoder", "--batch-size", "500", "--eval-every", "100",
                         "--out", str(out)])
    assert args.func(args) == 0          # 5000 > the 1437-image pool: allowed when counting images seen
    text = capsys.readouterr().out
    assert "Refined-AE" in text and "auto-decoder" in text
    rec = json.loads((out / "cells" / "seen_N5000_s0_ad.json").read_text())
    assert rec["stats"]["images_seen"] == 5000
    bad = p.parse_args(["gfe", "compare", "--train-sizes", "5", "--models", "ae,vae", "--out", str(tmp_path / "b")])
    with pytest.raises(ValueError, match="--models must be"):
        bad.func(bad)


def test_benchmark_torchdiffeq_section_runs():
    pytest.importorskip("torchdiffeq")
    from benchmarks import gfe as bench

    torch.manual_seed(0)
    dec = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ELU(), torch.nn.Linear(16, 16), torch.nn.Sigmoid())
    y = torch.rand(8, 16)
    from flowlearn.encoding import GradientFlowEncoder

    amd = GradientFlowEncoder(dec, 2).encode(y)
    out = bench.torchdiffeq_benchmark(dec, 2, y, float(amd.loss.mean()), float(amd.time.mean()), quick=True)
    row = out["dopri5"]
    assert row["decoder_evals_per_sample"] > 1 and row["mean_loss"] > 0
    assert set(out["training"]) == {"amd_approx", "amd_full", "dopri5_odeint_adjoint"}
