"""`flowlearn segment` on a tiny synthetic image: outputs, metrics, resume, bad input; the grid Gibbs sampler."""

import json

import numpy as np
import pytest
import torch

from flowlearn.cli.main import main
from flowlearn.experiments.photo_segmentation import (
    downsample,
    photo_potts_model,
    sample_diversity,
)
from flowlearn.pgm import grid_potts_gibbs, potts_grid, transfer_matrix_inference
from flowlearn.pgm.gibbs import potts_coupling


@pytest.fixture(autouse=True)
def keep_threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.fixture
def tiny_image(tmp_path):
    rng = np.random.default_rng(0)
    img = np.zeros((10, 12, 3))
    img[:, :6] = [0.9, 0.2, 0.1]
    img[:, 6:] = [0.1, 0.3, 0.9]
    img[3:7, 4:8] = [0.2, 0.8, 0.2]
    img += 0.2 * rng.standard_normal(img.shape)
    path = tmp_path / "tiny.npy"
    np.save(path, img)
    return path


SMALL = ["--labels", "3", "--iters", "6", "--batch-size", "8", "--gibbs-chains", "8", "--gibbs-burn-in", "20",
         "--gibbs-samples", "160", "--num-samples", "8", "--marginal-samples", "32", "--threads", "1"]


def test_segment_writes_outputs_and_resumes(tmp_path, tiny_image, capsys):
    out = tmp_path / "run"
    assert main(["segment", str(tiny_image), *SMALL, "--out", str(out)]) == 0
    for name in ("metrics.json", "samples.png", "marginals.png", "entropy.png", "image.png", "checkpoint.pt",
                 "marginals_flow.npy", "marginals_gibbs.npy", "history.json", "manifest.json"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["image_shape"] == [10, 12] and m["labels"] == 3
    for side in ("flow", "gibbs"):
        assert 1 <= m[side]["distinct"] <= 8 and 0.0 <= m[side]["mean_hamming"] <= 1.0
    assert m["gibbs"]["samples"] == 160 and 0.0 <= m["gibbs"]["expected_hamming"] <= 1.0
    assert m["gibbs"]["energy_standard_error"] > 0
    assert 0.0 <= m["marginal_difference"] <= 1.0 and 0.0 <= m["mean_abs_marginal_error"] <= 1.0
    q = np.load(out / "marginals_flow.npy")
    assert q.shape == (120, 3) and np.allclose(q.sum(1), 1.0, atol=1e-5)
    assert "distinct" in capsys.readouterr().out
    # one run per directory: refused without --resume; resumed gives the same flow
    assert main(["segment", str(tiny_image), *SMALL, "--out", str(out)]) == 2
    assert main(["segment", str(tiny_image), *SMALL, "--resume", "--out", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["flow"]["mean_energy"] == m["flow"]["mean_energy"]
    assert again["flow"]["resumed_from"] == 6


@pytest.mark.parametrize("args,match", [
    (["--labels", "1"], "labels must be >= 2"),
    (["--interaction", "node"], "invalid choice"),
    (["--size", "2"], "size must be 0 or >= 4"),
    (["--iters", "-1"], "iterations must be >= 0"),
    (["--coupling", "-1"], "coupling"),
])
def test_segment_rejects_bad_input_without_writing(tmp_path, tiny_image, capsys, args, match):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) if match == "invalid choice" else _nothing():
        assert main(["segment", str(tiny_image), *args, "--out", str(out)]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()


def test_segment_memory_guard_refuses_before_writing(tmp_path, tiny_image, capsys, monkeypatch):
    """The estimate (training batch, flow sampling chunk, Gibbs chains and statistics, outputs) is checked
    against the memory available before anything is allocated or written; one line, exit 2."""
    from flowlearn.experiments.photo_segmentation import (
        PhotoSegmentationConfig,
        segment_memory,
    )

    need = segment_memory((10, 12), 3, PhotoSegmentationConfig(labels=3, batch_size=8))["total"]
    monkeypatch.setenv("FLOWLEARN_MEMORY_LIMIT", str(need - 1))
    out = tmp_path / "never"
    assert main(["segment", str(tiny_image), "--labels", "3", "--batch-size", "8", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "segment of a 10x12 image with 3 labels needs about" in err and "--batch-size" in err
    assert not out.exists()
    monkeypatch.setenv("FLOWLEARN_MEMORY_LIMIT", str(need))
    assert main(["segment", str(tiny_image), *SMALL, "--out", str(out)]) == 0


def test_segment_missing_image(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_photo_model_and_helpers():
    img = np.zeros((8, 6, 3))
    img[:, 3:] = 1.0
    small = downsample(img, 4)
    assert small.shape == (4, 3, 3)
    assert downsample(img, 0).shape == img.shape and downsample(img, 6, square_crop=True).shape == (6, 6, 3)
    model = photo_potts_model(img + 0.01 * np.arange(48).reshape(8, 6, 1) / 48, np.array([[0.0] * 3, [1.0] * 3]),
                              coupling=0.7)
    assert model.grid_shape == (8, 6) and potts_coupling(model) == pytest.approx(0.7)
    assert bool((model.unary.argmin(1).reshape(8, 6)[:, 3:] == 1).all())
    d = sample_diversity(torch.tensor([[0, 0, 1], [0, 0, 1], [1, 1, 1]]))
    assert d["distinct"] == 2 and d["mean_hamming"] == pytest.approx((0 + 2 / 3 + 2 / 3) / 3)


def test_grid_potts_gibbs_matches_transfer_matrix():
    torch.manual_seed(0)
    model = potts_grid(torch.randn(3, 4, 3, dtype=torch.float64), 0.8)
    exact = transfer_matrix_inference(model)
    run = grid_potts_gibbs(model, 40000, num_chains=400, burn_in=50, seed=1)
    q = torch.nn.functional.one_hot(run.configs, 3).double().mean(0)
    assert float((q - exact.marginals).abs().max()) < 0.02
    assert potts_coupling(potts_grid(torch.zeros(2, 3, 2), 1.0)) == pytest.approx(1.0)
