"""API traps a user falls into: each is refused with one line or behaves as documented."""

from __future__ import annotations

import io
import sys

import pytest
import torch

from flowlearn import LinearizedAssignmentLayer


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_with_one_line(dtype):
    layer = LinearizedAssignmentLayer()
    p = torch.full((2, 9, 4, 4), 1 / 9, dtype=dtype)
    with pytest.raises(TypeError, match=rf"patches must be float32 or float64, got {dtype}: half precision"):
        layer(p, torch.rand(2, 3, 4, 4, dtype=dtype))


def test_simplex_optimizers_refuse_points_off_the_simplex():
    from flowlearn.learning import RiemannianSGD, SimplexAdam

    off = torch.rand(5, 4, dtype=torch.float64) + 0.1           # rows do not sum to 1
    for opt in (SimplexAdam, RiemannianSGD):
        with pytest.raises(ValueError, match="simplex parameter rows must sum to 1"):
            opt([off.clone().requires_grad_(True)], lr=0.1)
    neg = torch.tensor([[1.5, -0.5]], dtype=torch.float64)
    with pytest.raises(ValueError, match="simplex parameter must be strictly positive"):
        SimplexAdam([neg.requires_grad_(True)], lr=0.1)
    on = torch.full((3, 4), 0.25, dtype=torch.float64, requires_grad=True)
    opt = SimplexAdam([on], lr=0.1)
    on.grad = torch.randn(3, 4, dtype=torch.float64)
    opt.step()
    assert torch.isfinite(on).all() and torch.allclose(on.sum(-1), torch.ones(3, dtype=torch.float64))


def test_plotting_leaves_the_users_backend(tmp_path):
    import matplotlib

    from flowlearn.plotting import image_panel

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        image_panel(tmp_path / "p.png", [torch.rand(8, 8).numpy()], ["t"])
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "p.png").stat().st_size > 0
    finally:
        matplotlib.use(before)


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(monkeypatch):
    from flowlearn import progress as progress_module

    monkeypatch.delenv("FLOWLEARN_NO_PROGRESS", raising=False)
    monkeypatch.delenv("FLOWLEARN_PROGRESS", raising=False)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = progress_module.progress(range(5), total=5, desc="train")
    bar.interval = 0.0
    for _ in bar:
        bar.set_postfix(loss="0.5")
    bar.close()
    lines = err.getvalue().splitlines()
    assert lines[-1].startswith("train: 5/5 (100 %), ") and lines[-1].endswith("loss=0.5") and "\r" not in err.getvalue()
    monkeypatch.setenv("FLOWLEARN_NO_PROGRESS", "1")
    err.truncate(0)
    for _ in progress_module.progress(range(3), total=3, desc="quiet"):
        pass
    assert err.getvalue() == ""


def _model_file(tmp_path, **changes):
    from flowlearn.learning import LabelerConfig
    from flowlearn.learning.labeler import LabelerModel, save_model

    model = LabelerModel(LabelerConfig(layers=1, features=2, hidden=4, scales=2), 1, 2)
    path = save_model(tmp_path / "model.pt", model, {"input_scale": 255.0, "value_range": [0.0, 255.0]})
    blob = torch.load(path, weights_only=True)
    for key, value in changes.items():
        target = blob["config"] if key in blob["config"] else blob
        if value is KeyError:
            target.pop(key)
        else:
            target[key] = value
    torch.save(blob, path)
    return path


@pytest.mark.parametrize("changes, match", [
    ({"layers": 10 ** 7}, r"layers = 10000000, expected an integer in 1..64"),
    ({"num_labels": 2 ** 31}, r"num_labels = 2147483648, expected an integer in 1..1024"),
    ({"value_range": "ab"}, r"value_range = 'ab', expected \[low, high\] finite numbers"),
    ({"value_range": [0.0, float("nan")]}, r"value_range = \[0.0, nan\]"),
    ({"input_scale": -1.0}, r"input_scale = -1.0, expected a finite number > 0"),
    ({"state": {"extra": torch.zeros(1)}}, r"does not match its config: parameters"),
    ({"channels": KeyError}, r"lacks the entries \['channels'\]"),
])
def test_hostile_model_files_are_one_line_errors(tmp_path, changes, match):
    from flowlearn import load_model

    path = _model_file(tmp_path, **changes)
    with pytest.raises(ValueError, match=match):
        load_model(path)


def test_saved_model_loads_back_equal(tmp_path):
    from flowlearn import load_model

    model, meta = load_model(_model_file(tmp_path))
    assert meta["value_range"] == [0.0, 255.0] and model.num_labels == 2 and not model.training


def test_k_means_labels_are_matched_to_the_truth_before_scoring(tmp_path, capsys):
    """``label IMAGE --k 2 --truth T``: cluster ids are arbitrary; a labeling that is right up to a renumbering
    scores 0 %, not 100 %."""
    import json

    import numpy as np

    from flowlearn.cli.main import main
    from flowlearn.evaluation.labels import match_labels

    truth = np.zeros((16, 16), dtype=np.int64)
    truth[:, 8:] = 1
    image = np.where(truth[..., None] == 1, 0.1, 0.9) * np.ones((1, 1, 3))   # class 1 dark: k-means may call it 0
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "truth.npy", truth)
    assert main(["label", str(tmp_path / "image.npy"), "--k", "2", "--truth", str(tmp_path / "truth.npy"),
                 "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["label_error_percent"] == 0.0 and metrics["rounding_label_error_percent"] == 0.0
    assert "matched to the truth" in capsys.readouterr().out
    swapped, mapping = match_labels(1 - truth, truth)
    assert np.array_equal(swapped, truth) and mapping == {0: 1, 1: 0}
    three, m3 = match_labels(np.array([0, 1, 2, 2]), np.array([1, 0, 0, 0]))
    assert m3[2] == 0 and m3[0] == 1 and m3[1] == 2 and list(three) == [1, 2, 0, 0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ulimit -v is a Linux shell feature here")
def test_memory_guard_sees_ulimit_v(tmp_path):
    """The limit is the least of MemAvailable, RLIMIT_AS and the cgroup's memory.max: ``voronoi --size 8000``
    under ``ulimit -v 4500000`` is refused with one line instead of a traceback after 3.8 GB."""
    import subprocess

    cmd = (f"ulimit -v 4500000; {sys.executable} -c 'from flowlearn._checks import available_memory; "
           f"print(available_memory())'; {sys.executable} -m flowlearn voronoi --size 8000 --out {tmp_path / 'v'}")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    first = proc.stdout.splitlines()[0]
    assert int(first) < 4_500_000 * 1024
    assert proc.returncode == 2 and "needs about 7.68 GB of memory, more than the" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "v").exists()
