"""`flowlearn label` and `flowlearn demo` end to end, and their bad-input table."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from flowlearn.cli.main import main


def _write_problem(tmp_path):
    lab = np.zeros((12, 14), dtype=np.int64)
    lab[:, 7:] = 1
    rng = np.random.default_rng(0)
    img = np.array([[0.1, 0.2, 0.3], [0.8, 0.7, 0.9]])[lab] + 0.05 * rng.standard_normal((12, 14, 3))
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "truth.npy", lab)
    np.save(tmp_path / "protos.npy", np.array([[0.1, 0.2, 0.3], [0.8, 0.7, 0.9]]))
    np.savetxt(tmp_path / "protos.txt", np.array([[0.1, 0.2, 0.3], [0.8, 0.7, 0.9]]))
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    return lab


@pytest.mark.parametrize("flow", ["full", "linearized"])
@pytest.mark.parametrize("image,protos", [("img.npy", "protos.npy"), ("img.png", "protos.txt")])
def test_label_cli_writes_outputs(tmp_path, flow, image, protos):
    lab = _write_problem(tmp_path)
    out = tmp_path / "out"
    rc = main(["label", str(tmp_path / image), "--prototypes", str(tmp_path / protos), "--flow", flow,
               "--truth", str(tmp_path / "truth.npy"), "--out", str(out)])
    assert rc == 0
    labels = np.load(out / "labels.npy")
    assert labels.shape == (12, 14) and labels.dtype == np.int64
    assert np.array_equal(labels, lab)
    m = json.loads((out / "metrics.json").read_text())
    assert m["label_error_percent"] == 0.0 and m["flow"] == flow
    for f in ("labels.png", "overlay.png"):
        assert Image.open(out / f).size == (14, 12)


def test_label_cli_kmeans(tmp_path):
    lab = _write_problem(tmp_path)
    out = tmp_path / "km"
    assert main(["label", str(tmp_path / "img.npy"), "--k", "2", "--out", str(out)]) == 0
    labels = np.load(out / "labels.npy")
    agree = max((labels == lab).mean(), (labels == 1 - lab).mean())
    assert agree == 1.0


BAD = [
    # (description, argv builder, expected message)
    ("NaN in image", lambda d: [str(d / "nan.npy"), "--prototypes", str(d / "protos.npy")], "finite"),
    ("not an image", lambda d: [str(d / "fake.png"), "--prototypes", str(d / "protos.npy")], "fake.png"),
    ("missing image", lambda d: [str(d / "missing.png"), "--prototypes", str(d / "protos.npy")], "missing.png"),
    ("prototype dimension", lambda d: [str(d / "img.npy"), "--prototypes", str(d / "protos4.npy")],
     "channels|dimension"),
    ("rho <= 0", lambda d: [str(d / "img.npy"), "--prototypes", str(d / "protos.npy"), "--rho", "0"],
     "rho must be finite and > 0"),
    ("even neighbourhood",
     lambda d: [str(d / "img.npy"), "--prototypes", str(d / "protos.npy"), "--neighbourhood", "4"],
     "neighbourhood must be odd, got 4"),
    ("wrong ndim", lambda d: [str(d / "img4d.npy"), "--prototypes", str(d / "protos.npy")], "ndim|dimensional"),
    ("truth shape",
     lambda d: [str(d / "img.npy"), "--prototypes", str(d / "protos.npy"), "--truth", str(d / "protos.npy")],
     "--truth must have the image's shape"),
    ("k too small", lambda d: [str(d / "img.npy"), "--k", "1"], "k must be"),
]


@pytest.mark.parametrize("desc,argv,match", BAD, ids=[b[0] for b in BAD])
def test_label_cli_bad_input(tmp_path, capsys, desc, argv, match):
    _write_problem(tmp_path)
    img = np.load(tmp_path / "img.npy")
    img[3, 3, 1] = np.nan
    np.save(tmp_path / "nan.npy", img)
    np.save(tmp_path / "img4d.npy", np.zeros((2, 3, 4, 5)))
    np.save(tmp_path / "protos4.npy", np.zeros((2, 4)))
    (tmp_path / "fake.png").write_text("this is not a PNG")
    out = tmp_path / "out"
    rc = main(["label", *argv(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "error:" in err and len(err.strip().splitlines()) == 1
    import re
    assert re.search(match, err), err
    assert not out.exists()  # nothing written


def test_label_cli_unwritable_out(tmp_path, capsys):
    _write_problem(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["label", str(tmp_path / "img.npy"), "--prototypes", str(tmp_path / "protos.npy"),
               "--out", str(blocker / "sub")])
    assert rc == 2 and "cannot be created" in capsys.readouterr().err
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK) and os.geteuid() == 0:
            pytest.skip("running as root: permissions are not enforced")
        rc = main(["label", str(tmp_path / "img.npy"), "--prototypes", str(tmp_path / "protos.npy"), "--out", str(ro)])
        assert rc == 2 and "not writable" in capsys.readouterr().err
    finally:
        os.chmod(ro, 0o700)


def test_demo_small(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--size", "48", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    lab = m["labeling"]
    assert lab["full_flow"]["label_error_percent"] < lab["rounding"]["label_error_percent"] / 3
    assert lab["linearized_flow"]["label_error_percent"] < lab["rounding"]["label_error_percent"] / 3
    assert (out / "labeling.png").stat().st_size > 1000
