"""The ISBI membrane model shipped inside the package: loads by name, and labels unseen slices as its card says."""

from pathlib import Path

import numpy as np
import pytest
import torch

import flowlearn
from flowlearn.learning.labeler import SHIPPED_MODELS, model_path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012_membranes.npz"


def test_every_shipped_model_is_in_the_package_with_a_card():
    for name in SHIPPED_MODELS:
        assert model_path(name).is_file() and model_path(name).with_suffix(".md").is_file()
        model, meta = flowlearn.load_model(name)
        assert meta["num_labels"] == 2 and model.num_parameters() < 20000


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/isbi2012_membranes.npz")
def test_isbi_membranes_on_an_unseen_slice():
    model, _ = flowlearn.load_model("isbi-membranes")
    d = np.load(DATA)
    x = torch.from_numpy(d["images"][21, :256, :256].astype(np.float32) / 255)[..., None]
    pred = model.predict(x).numpy()
    error = 100 * float((pred != d["labels"][21, :256, :256]).mean())
    assert error < 13.0, error      # the card: 9.8 % on slices 20-23


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/isbi2012_membranes.npz")
def test_cli_labels_a_tiff_stack_with_the_shipped_model_whole_and_tiled(tmp_path):
    pytest.importorskip("dask.array")
    tifffile = pytest.importorskip("tifffile")
    from flowlearn.cli.main import main

    d = np.load(DATA)
    tifffile.imwrite(tmp_path / "stack.tif", d["images"][20:22, :96, :112], photometric="minisblack")
    for name, extra in (("whole", []), ("tiled", ["--tile", "48", "--overlap", "48"])):
        assert main(["label", str(tmp_path / "stack.tif"), "--model", "isbi-membranes", *extra,
                     "--out", str(tmp_path / name)]) == 0
    whole = tifffile.imread(tmp_path / "whole" / "probabilities.tif")
    tiled = tifffile.imread(tmp_path / "tiled" / "probabilities.tif")
    assert whole.shape == (2, 2, 96, 112) and whole.dtype == np.float32
    assert np.abs(whole - tiled).max() < 5e-3
    assert tifffile.imread(tmp_path / "whole" / "labels.tif").shape == (2, 96, 112)
