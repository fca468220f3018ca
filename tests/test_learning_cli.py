"""``flowlearn learn``, ``gradcheck`` and ``predict`` end to end on tiny problems, and their error paths."""

import json

import numpy as np
import pytest

from flowlearn.cli.main import main


def test_learn_writes_history_weights_and_pictures(tmp_path):
    out = tmp_path / "run"
    assert main(["learn", "--size", "16", "--iters", "3", "--grad", "lowrank", "autodiff-expint",
                 "--out", str(out)]) == 0
    for name in ["history_lowrank.json", "history_autodiff-expint.json", "patches_lowrank.npy",
                 "labeling_lowrank.png", "labeling_uniform.png", "weights_lowrank.png", "curves.png",
                 "summary.json", "checkpoint_lowrank.pt"]:
        assert (out / name).exists(), name
    hist = json.loads((out / "history_lowrank.json").read_text())
    assert [h["iteration"] for h in hist] == [0, 1, 2]
    assert {"loss", "label_error", "seconds"} <= set(hist[0])
    patches = np.load(out / "patches_lowrank.npy")
    assert patches.shape == (256, 9) and np.allclose(patches.sum(1), 1.0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["learned"]["lowrank"]["final"]["loss"] < summary["uniform"]["loss"]
    # resume: three more iterations continue the history
    assert main(["learn", "--size", "16", "--iters", "5", "--resume", "--out", str(out)]) == 0
    assert len(json.loads((out / "history_lowrank.json").read_text())) == 5


def test_learn_from_image_and_labels(tmp_path):
    assert main(["voronoi", "--size", "8", "--scenario", "colors", "--out", str(tmp_path / "v")]) == 0
    out = tmp_path / "run"
    assert main(["learn", "--image", str(tmp_path / "v" / "image.npy"), "--labels",
                 str(tmp_path / "v" / "labels.npy"), "--prototypes", str(tmp_path / "v" / "prototypes.npy"),
                 "--iters", "2", "--grad", "exact", "--out", str(out)]) == 0
    assert (out / "patches_exact.npy").exists()


def test_gradcheck_writes_fractions_and_figures(tmp_path):
    out = tmp_path / "gc"
    assert main(["gradcheck", "--size", "16", "--reference", "autodiff-expint", "--out", str(out)]) == 0
    rep = json.loads((out / "gradcheck.json").read_text())
    assert rep["fraction_ge_0.9"] >= 0.95 and rep["overall_cosine"] > 0.99
    assert (out / "gradcheck.png").exists() and (out / "rank_study.png").exists()
    sv = json.loads((out / "rank_study.json").read_text())["singular_values"]
    assert sv == sorted(sv, reverse=True)


def test_predict_train_and_label(tmp_path):
    out = tmp_path / "pred"
    assert main(["predict", "--size", "16", "--iters", "2", "--num-prototypes", "5", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert {"rounding", "uniform", "predicted"} <= set(res["test"][0])
    assert main(["voronoi", "--size", "16", "--scenario", "boundary", "--seed", "5",
                 "--out", str(tmp_path / "v")]) == 0
    assert main(["predict", "--model", str(out / "predictor.pt"), "--image", str(tmp_path / "v" / "image.npy"),
                 "--labels", str(tmp_path / "v" / "labels.npy"), "--out", str(tmp_path / "lab")]) == 0
    assert "label_error" in json.loads((tmp_path / "lab" / "result.json").read_text())


@pytest.mark.parametrize("argv,match", [
    (["learn", "--size", "16", "--labels", "x.npy"], "--labels needs --image"),
    (["learn", "--size", "16", "--rho", "-1"], "rho must be"),
    (["learn", "--size", "16", "--m", "0"], "m must be >= 1"),
    (["gradcheck", "--size", "16", "--min-norm", "-1"], "--min-norm must be >= 0"),
    (["predict", "--model", "m.pt"], "--model needs --image"),
])
def test_cli_errors_leave_no_output(tmp_path, capsys, argv, match):
    out = tmp_path / "never"
    assert main(argv + ["--out", str(out)]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()
