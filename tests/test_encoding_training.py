"""Data, models, training (resume), compare (resume), CLI and torchrun/DDP for gradient flow encoding."""

import argparse
import gzip
import json
import os
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from flowlearn.cli import gfe as gfe_cli
from flowlearn.encoding import (
    Autoencoder,
    GradientFlowEncoder,
    TrainConfig,
    Trainer,
    load_dataset,
    make_decoder,
    training_subset,
)
from flowlearn.encoding.data import read_idx
from flowlearn.encoding.models import decoder_widths
from flowlearn.engine.checkpoint import load_checkpoint, load_weights
from flowlearn.experiments.gfe_data_efficiency import compare


pytestmark = pytest.mark.usefixtures("one_thread")


def _write_idx(path, arr, gz=False):
    arr = np.asarray(arr, dtype=np.uint8)
    raw = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    with (gzip.open if gz else open)(path, "wb") as fh:
        fh.write(raw)


def _fake_mnist(root, n_train=40, n_test=30, gz=False):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    _write_idx(root / f"train-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_train, 28, 28)), gz)
    _write_idx(root / f"train-labels-idx1-ubyte{sfx}", np.arange(n_train) % 10, gz)
    _write_idx(root / f"t10k-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_test, 28, 28)), gz)
    _write_idx(root / f"t10k-labels-idx1-ubyte{sfx}", np.arange(n_test) % 10, gz)


# ----------------------------------------------------------------------------- data and models
def test_digits_split_is_held_out_and_fixed():
    d = load_dataset("digits", dtype=torch.float64)
    assert d.train.shape == (1437, 64) and d.val.shape == (360, 64) and d.image_shape == (8, 8)
    assert float(d.train.min()) >= 0 and float(d.train.max()) <= 1
    rows_train = {tuple(r) for r in d.train.tolist()}
    assert sum(tuple(r) in rows_train for r in d.val.tolist()) < 5     # only duplicate images may coincide
    assert torch.equal(load_dataset("digits", dtype=torch.float64).val, d.val)
    a, b = training_subset(d, 50, 0), training_subset(d, 50, 1)
    assert torch.equal(a, training_subset(d, 50, 0)) and not torch.equal(a, b) and len(set(a.tolist())) == 50
    with pytest.raises(ValueError, match="train_size must be <= 1437"):
        training_subset(d, 5000, 0)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_and_mnist_segmnist(tmp_path, gz):
    _fake_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    sfx = ".gz" if gz else ""
    arr = read_idx(tmp_path / "MNIST" / "raw" / f"train-labels-idx1-ubyte{sfx}")
    assert arr.shape == (40,) and arr.tolist() == [i % 10 for i in range(40)]
    m = load_dataset("mnist", tmp_path, dtype=torch.float64)
    assert m.train.shape == (40, 784) and m.val.shape == (30, 784) and m.image_shape == (28, 28)
    s = load_dataset("segmnist", tmp_path)
    assert bool((s.train_labels <= 4).all()) and bool((s.val_labels >= 5).all()) and len(s.train) == 20
    assert len(load_dataset("mnist", tmp_path, val_size=7).val) == 7


def test_missing_idx_files_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.*--data-dir"):
        load_dataset("fmnist", tmp_path)
    with pytest.raises(FileNotFoundError, match="pass --data-dir"):
        load_dataset("mnist", None)
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_dataset("cifar")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04\x05")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "bad")


def test_decoder_matches_authors_architecture_on_mnist():
    assert decoder_widths(784) == [20, 150, 300, 600, 784]
    dec = make_decoder(784)
    linears = [m for m in dec if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(20, 150), (150, 300), (300, 600), (600, 784)]
    assert isinstance(dec[-1], torch.nn.Sigmoid) and sum(isinstance(m, torch.nn.ELU) for m in dec) == 3
    ae = Autoencoder.for_data(64)
    enc_lin = [m for m in ae.encoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in enc_lin] == [(64, 49), (49, 25), (25, 13), (13, 6)]
    assert ae(torch.rand(3, 64)).shape == (3, 64)


# ----------------------------------------------------------------------------- training and resume
class _Interrupted(Trainer):
    """Raises KeyboardInterrupt in the middle of training (after ``stop_after`` optimizer steps)."""

    stop_after = 3

    def _optimizer(self, params):
        opt = super()._optimizer(params)
        original, calls = opt.step, [0]

        def step(*a, **k):
            calls[0] += 1
            if calls[0] > self.stop_after:
                raise KeyboardInterrupt
            return original(*a, **k)
        opt.step = step
        return opt


@pytest.mark.parametrize("model", ["gfe", "ae"])
def test_resumed_run_equals_uninterrupted(tmp_path, model):
    d = load_dataset("digits", dtype=torch.float64)
    idx = training_subset(d, 48, 0)
    cfg = TrainConfig(model=model, epochs=2, batch_size=16, eval_every=2, checkpoint_every=2, seed=4)
    full = Trainer(cfg).fit(d, idx)
    with pytest.raises(KeyboardInterrupt):
        _Interrupted(cfg).fit(d, idx, out_dir=tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 2
    resumed = Trainer(cfg).fit(d, idx, out_dir=tmp_path, resume=True)
    assert resumed.stats["resumed_from_step"] == 2 and resumed.stats["steps"] == 6
    for a, b in zip(full.module.state_dict().values(), resumed.module.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["val_bce"] for h in full.history] == [h["val_bce"] for h in resumed.history]
    with pytest.raises(ValueError, match=r"belongs to a different run \(config.epochs: 2 in the checkpoint, 3 now"):
        Trainer(TrainConfig(model=model, epochs=3, batch_size=16, seed=4)).fit(d, idx, out_dir=tmp_path,
                                                                               resume=True)


def test_training_reduces_validation_loss_and_mixed():
    d = load_dataset("digits", dtype=torch.float32)
    res = Trainer(TrainConfig(model="ae", epochs=3, lr=2e-3, eval_every=20)).fit(d, training_subset(d, 300, 0))
    assert res.history[-1]["val_bce"] < res.history[0]["val_bce"]
    assert res.mixed_val_bce is not None and res.mixed_val_bce < 0.7
    assert res.module.decoder[0].weight.dtype == torch.float32


@pytest.mark.parametrize("kwargs, match", [({"model": "vae"}, "model"), ({"optimizer": "sgd"}, "optimizer"),
                                           ({"solver": "dopri5"}, "solver"), ({"epochs": 0}, "epochs"),
                                           ({"lr": -1.0}, "lr")])
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


# ----------------------------------------------------------------------------- compare and CLI
def test_compare_table_and_resume(tmp_path):
    d = load_dataset("digits", dtype=torch.float32)
    logs = []
    table = compare(d, [8, 16], 2, tmp_path, base=TrainConfig(batch_size=8, eval_every=1), images=16,
                    log=logs.append)
    assert set(table["rows"]) == {"8", "16"}
    for row in table["rows"].values():
        for m in ("AE", "GFE-amd", "Mixed"):
            assert row[m]["n_seeds"] == 2 and row[m]["mean"] > 0 and row[m]["std"] >= 0
            assert abs(row[m]["mean"] - np.mean(row[m]["values"])) < 1e-12
    for name in ("table.json", "data_efficiency.png", "curves_N8.png", "reconstructions_N16.png"):
        assert (tmp_path / name).exists()
    logs.clear()
    again = compare(d, [8, 16], 2, tmp_path, base=TrainConfig(batch_size=8, eval_every=1), images=16,
                    log=logs.append)
    assert len(logs) == 8 and all("skipped" in line for line in logs)
    assert again["rows"] == table["rows"]


def _parse(argv):
    p = argparse.ArgumentParser()
    gfe_cli.register(p.add_subparsers(dest="command"))
    return p.parse_args(argv)


def test_cli_train_writes_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    args = _parse(["gfe", "train", "--train-size", "32", "--batch-size", "16", "--epochs", "1", "--eval-every", "1",
                   "--out", str(out)])
    assert args.func(args) == 0
    for name in ("metrics.json", "history.json", "curves.png", "reconstructions.png", "model.pt"):
        assert (out / name).exists()
    metrics = json.loads((out / "metrics.json").read_text())
    # the CLI's defaults are the measured recipe (cli.gfe.TRAIN_DEFAULTS), not the paper's TrainConfig()
    assert metrics["config"]["solver"] == "bb" and metrics["config"]["optimizer"] == "adam"
    assert metrics["stats"]["steps"] == 2
    assert "validation BCE" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["gfe", "train", "--dataset", "mnist"], "IDX files"),
    (["gfe", "train", "--train-size", "99999"], "train_size must be <="),
    (["gfe", "compare", "--train-sizes", "10,x"], "comma-separated integers"),
    (["gfe", "compare", "--train-sizes", "0"], r"must lie in \[1, 1437\]"),
])
def test_cli_rejects_bad_input_before_writing(tmp_path, argv, match):
    out = tmp_path / "never"
    args = _parse(argv + ["--out", str(out)])
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        args.func(args)
    assert not out.exists()


# ----------------------------------------------------------------------------- torchrun / DDP
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("model, adjoint", [("gfe", "approx"),
                                            pytest.param("gfe", "full", marks=pytest.mark.slow),
                                            pytest.param("ae", "approx", marks=pytest.mark.slow)])
def test_torchrun_two_processes_equal_one_process(tmp_path, model, adjoint):
    argv = ["--dataset", "digits", "--model", model, "--adjoint", adjoint, "--train-size", "64",
            "--batch-size", "16", "--epochs", "1", "--eval-every", "100", "--seed", "3", "--dtype", "float64",
            "--solver", "amd", "--optimizer", "rmsprop"]
    env = dict(os.environ, OMP_NUM_THREADS="1", FLOWLEARN_NO_PROGRESS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "flowlearn", "gfe", "train", *argv, "--out", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp_state = load_weights(tmp_path / "model.pt")["state_dict"]
    d = load_dataset("digits", dtype=torch.float64)
    cfg = TrainConfig(model=model, adjoint=adjoint, batch_size=16, epochs=1, eval_every=100, seed=3)
    single = Trainer(cfg).fit(d, training_subset(d, 64, 3)).module.state_dict()
    init = Trainer(cfg).build(64, dtype=torch.float64).state_dict()
    assert ddp_state.keys() == single.keys()
    for k in single:
        assert torch.allclose(ddp_state[k], single[k], rtol=1e-10, atol=1e-12), k
    assert any(not torch.equal(single[k], init[k]) for k in single)      # training really moved the weights


def test_encoder_names_a_dtype_mismatch():
    gfe = GradientFlowEncoder(make_decoder(16, 3, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match=r"y must have the decoder's dtype.*float64.*float32"):
        gfe.encode(torch.rand(2, 16, dtype=torch.float32))
    assert gfe.encode(torch.rand(2, 16, dtype=torch.float64)).z.dtype == torch.float64
