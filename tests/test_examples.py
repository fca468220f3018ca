"""The scripts in ``examples/`` run at small size (``--small``) and produce what they promise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, out: Path) -> dict:
    env = dict(os.environ, FLOWLEARN_NO_PROGRESS="1")
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--small", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=EXAMPLES, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def test_every_example_is_tested():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    assert scripts == {"label_image", "learn_weights", "ising_sampling", "encode_digits"}


def test_label_image(tmp_path):
    m = run_example("label_image", tmp_path)
    for flow in ("full_rk4", "linearized_krylov"):
        assert m[flow]["label_error_percent"] < m["rounding"] / 4
        assert (tmp_path / f"{flow}.png").stat().st_size > 0


def test_learn_weights(tmp_path):
    m = run_example("learn_weights", tmp_path)
    assert m["learned"]["loss"] < m["uniform"]["loss"]
    assert m["learned"]["label_error"] < m["uniform"]["label_error"]
    assert (tmp_path / "curves.png").exists() and (tmp_path / "patches.pt").exists()


def test_ising_sampling(tmp_path):
    m = run_example("ising_sampling", tmp_path)
    af, mf = m["randomized_af"], m["mean_field"]
    assert 0.0 <= af["kl"] < mf["kl"]
    samples = np.array(m["samples"])
    assert samples.shape == (8, 24) and set(np.unique(samples)) <= {0, 1}


def test_encode_digits(tmp_path):
    from sklearn.datasets import load_digits

    m = run_example("encode_digits", tmp_path)
    # a trained decoder must beat the best constant image (the pixel means) on held-out digits
    x = load_digits().images.reshape(-1, 64) / 16.0
    p = np.clip(x.mean(axis=0), 1e-6, 1 - 1e-6)
    constant_bce = float(-(x * np.log(p) + (1 - x) * np.log(1 - p)).mean())
    assert m["gfe"] < constant_bce and m["ae"] < constant_bce + 0.05
    assert all(s >= 1 for s in m["amd_steps"]) and all(e >= s for e, s in zip(m["amd_decoder_evals"], m["amd_steps"]))
    assert (tmp_path / "reconstructions.png").stat().st_size > 0
