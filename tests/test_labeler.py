"""``flowlearn train-labeler`` and ``flowlearn label --model``: training, resume, data identity, bad inputs."""

import json

import numpy as np
import pytest
import torch

from flowlearn.cli.main import main

ARGS = ["--train", "0-3", "--val", "4-5", "--crop", "16", "--layers", "2", "--features", "4", "--hidden", "4",
        "--batch", "1", "--eval-every", "3", "--lr", "0.05", "--threads", "1", "--pretrain-steps", "0",
        "--class-balance", "0", "--final-lr-fraction", "1"]


def _data(path, seed=0, n=6, size=24):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels, images = [], []
    for _ in range(n):
        c = rng.uniform(4, size - 4, 2)
        lab = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2 < rng.uniform(20, 60)).astype(np.int64)
        img = np.clip(0.3 + 0.4 * lab + rng.normal(0, 0.25, lab.shape), 0, 1)
        labels.append(lab)
        images.append((255 * img).astype(np.uint8))
    np.savez(path, images=np.stack(images), labels=np.stack(labels))
    return np.stack(images), np.stack(labels)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("labeler")
    data = root / "data.npz"
    images, labels = _data(data)
    out = root / "run"
    assert main(["train-labeler", "--data", str(data), *ARGS, "--iterations", "6", "--out", str(out)]) == 0
    return root, data, out, images, labels


def test_train_writes_model_history_curves(trained):
    _, _, out, _, _ = trained
    for name in ("model.pt", "model.json", "history.json", "curves.png", "manifest.json"):
        assert (out / name).is_file(), name
    state = torch.load(out / "model.pt", weights_only=True)
    meta = json.loads((out / "model.json").read_text())
    assert meta["num_labels"] == 2 and meta["channels"] == 1 and meta["input_scale"] == 255.0
    assert meta["parameters"] == sum(v.numel() for k, v in state["state"].items() if not k.startswith("bank_"))
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 6 and all(np.isfinite(h["loss"]) for h in history)
    assert [h["iteration"] for h in history if h["validation_error"] is not None] == [2, 5]


def test_resume_ends_identically(trained, tmp_path):
    _root, data, out, _, _ = trained
    part = tmp_path / "part"
    assert main(["train-labeler", "--data", str(data), *ARGS, "--iterations", "3", "--out", str(part)]) == 0
    assert main(["train-labeler", "--data", str(data), *ARGS, "--iterations", "6", "--out", str(part),
                 "--resume"]) == 0
    a = torch.load(out / "model.pt", weights_only=True)["state"]
    b = torch.load(part / "model.pt", weights_only=True)["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((out / "history.json").read_text())
    hb = json.loads((part / "history.json").read_text())
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]


def test_resume_with_different_data_is_refused(trained, tmp_path, capsys):
    _root, data, _out, _, _ = trained
    part = tmp_path / "part"
    assert main(["train-labeler", "--data", str(data), *ARGS, "--iterations", "2", "--out", str(part)]) == 0
    other = tmp_path / "other.npz"
    _data(other, seed=1)
    capsys.readouterr()
    assert main(["train-labeler", "--data", str(other), *ARGS, "--iterations", "4", "--out", str(part),
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different run" in err and "data" in err


def test_label_with_model_gives_pixel_error(trained, tmp_path):
    _root, _, out, images, labels = trained
    np.save(tmp_path / "img.npy", images[5])
    np.save(tmp_path / "truth.npy", labels[5])
    dest = tmp_path / "labelled"
    assert main(["label", str(tmp_path / "img.npy"), "--model", str(out / "model.pt"), "--truth",
                 str(tmp_path / "truth.npy"), "--out", str(dest)]) == 0
    lab = np.load(dest / "labels.npy")
    assert lab.shape == (24, 24) and set(np.unique(lab)) <= {0, 1}
    metrics = json.loads((dest / "metrics.json").read_text())
    assert 0 <= metrics["pixel_error_percent"] <= 100
    assert metrics["pixel_error_percent"] == pytest.approx(100 * np.mean(lab != labels[5]))
    assert (dest / "labels.png").is_file() and (dest / "overlay.png").is_file()


def test_bad_inputs_exit_2_with_one_line(trained, tmp_path, capsys):
    _root, data, out, images, _labels = trained
    np.savez(tmp_path / "nolabels.npz", images=images)
    np.save(tmp_path / "rgb.npy", np.zeros((24, 24, 3)))
    cases = [
        (["train-labeler", "--data", str(data), "--train", "0-99"], "--train"),
        (["train-labeler", "--data", str(data), "--train", "a-b"], "--train"),
        (["train-labeler", "--data", str(tmp_path / "nolabels.npz"), "--train", "0"], "labels"),
        (["train-labeler", "--data", str(tmp_path / "missing.npz"), "--train", "0"], "--data"),
        (["train-labeler", "--data", str(data), "--train", "0", "--crop", "100"], "crop"),
        (["train-labeler", "--data", str(data), "--train", "0", "--lr", "-1"], "lr"),
        (["label", str(tmp_path / "rgb.npy"), "--model", str(out / "model.pt")], "channel"),
        (["label", str(tmp_path / "rgb.npy"), "--model", str(tmp_path / "none.pt")], "--model"),
    ]
    for k, (argv, word) in enumerate(cases):
        capsys.readouterr()
        assert main(argv + ["--out", str(tmp_path / f"o{k}")]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and word in err, (argv, err)
        assert not (tmp_path / f"o{k}").exists()


def test_torchrun_two_processes_equal_one_process(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from flowlearn.engine.checkpoint import load_weights

    data = tmp_path / "data.npz"
    _data(data)
    args = [a if a != "1" or i != ARGS.index("--batch") + 1 else "2" for i, a in enumerate(ARGS)]  # 2 crops a step
    argv = ["train-labeler", "--data", str(data), *args, "--iterations", "4", "--pretrain-steps", "2",
            "--final-lr-fraction", "0.5", "--class-balance", "0.5"]
    # two warm-up steps on pixels split over the ranks (the weighted mean), then crops
    env = dict(os.environ, OMP_NUM_THREADS="1", FLOWLEARN_NO_PROGRESS="1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs = {"two": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                    "127.0.0.1", "--master_port", str(port), "-m", "flowlearn"],
            "one": [sys.executable, "-m", "flowlearn"]}
    for name, launch in runs.items():
        proc = subprocess.run([*launch, *argv, "--out", str(tmp_path / name)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    two, one = (load_weights(tmp_path / n / "model.pt")["state"] for n in ("two", "one"))
    assert two.keys() == one.keys()
    for k in one:
        assert torch.allclose(two[k], one[k], rtol=1e-5, atol=1e-7), k
