"""`flowlearn ising`: outputs, table layout, validation before writing."""

import json

import pytest
import torch

from flowlearn.cli.main import main


@pytest.fixture(autouse=True)
def keep_threads():
    """``--threads`` changes a process-wide torch setting: restore it for the other tests."""
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)

SMALL = ["--rows", "2", "--cols", "4", "--iters", "15", "--eval-samples", "3000", "--gibbs-samples", "2000",
         "--mf-restarts", "20", "--batch-size", "32", "--threads", "1"]


def test_ising_command_writes_table_and_pictures(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["ising", *SMALL, "--field", "2", "--coupling", "1.0", "--seed", "3", "--out", str(out)]) == 0
    for name in ("table.json", "history.json", "samples.png", "marginals.png", "training_curve.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    data = json.loads((out / "table.json").read_text())
    assert set(data["table"]) == {"exact", "randomized_af", "randomized_af_argmax", "mean_field", "gibbs", "loopy_bp"}
    af = data["details"]["randomized_af"]
    assert af["rounding"] == "random" and 0.0 <= af["integral_fraction"] <= 1.0
    assert data["details"]["reference"]["method"] == "transfer"
    for row in data["table"].values():
        assert set(row) == {"kl", "energy", "entropy", "marginal_difference", "seconds"}
    assert data["table"]["exact"]["kl"] == 0.0
    assert data["paper"]["randomized_af"]["kl"] == 0.599
    assert data["config"]["field"] == 2.0 and data["config"]["seed"] == 3
    assert data["table"]["mean_field"]["kl"] >= 0
    assert "randomized_af" in capsys.readouterr().out
    # a second call with --resume continues the finished checkpoint and reproduces the table's flow row
    assert main(["ising", *SMALL, "--field", "2", "--coupling", "1.0", "--seed", "3", "--out", str(out)]) == 2
    assert main(["ising", *SMALL, "--field", "2", "--coupling", "1.0", "--seed", "3", "--resume",
                 "--out", str(out)]) == 0
    again = json.loads((out / "table.json").read_text())
    assert again["table"]["randomized_af"]["kl"] == data["table"]["randomized_af"]["kl"]


@pytest.mark.parametrize("args,match", [
    (["--rows", "20", "--cols", "20", "--reference", "exact"], "reference='exact' is not feasible"),
    (["--labels", "1"], "labels must be >= 2"),
    (["--field-noise", "-1"], "field_noise"),
    (["--iters", "-1"], "iterations must be >= 0"),
    (["--rows", "2", "--cols", "3", "--field", "nan"], "field must be a finite number"),
    (["--rows", "2", "--cols", "3", "--eval-samples", "0"], "eval_samples must be >= 1"),
])
def test_ising_command_rejects_bad_input_without_writing(tmp_path, capsys, args, match):
    out = tmp_path / "never"
    assert main(["ising", *args, "--out", str(out)]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()


def test_ising_command_rejects_unknown_choice(tmp_path):
    with pytest.raises(SystemExit):
        main(["ising", "--rounding", "nearest", "--out", str(tmp_path / "x")])
