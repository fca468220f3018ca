"""``flowlearn label --model`` for EM segmentation: probability/entropy/label TIFFs, TIFF stacks, input
normalisation by the model's training scale, and label-value checks of ``train-labeler --data``."""

import json

import numpy as np
import pytest
import tifffile
import torch

from flowlearn._checks import UserInputError
from flowlearn.cli.main import main
from flowlearn.data import read_image
from flowlearn.data.images import read_stack
from flowlearn.learning.labeler import load_model
from flowlearn.learning.labeler_io import normalise_image
from tests.test_labeler import ARGS, _data


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("em")
    data = root / "data.npz"
    images, labels = _data(data)
    out = root / "run"
    assert main(["train-labeler", "--data", str(data), *ARGS, "--iterations", "6", "--out", str(out)]) == 0
    return out / "model.pt", images, labels


def _label(tmp_path, model_path, image, name, *extra):
    src = tmp_path / name
    if name.endswith(".npy"):
        np.save(src, image)
    else:
        tifffile.imwrite(src, image, photometric="minisblack")
    dest = tmp_path / (name + ".out")
    assert main(["label", str(src), "--model", str(model_path), "--out", str(dest), *extra]) == 0
    return dest


def test_model_json_stores_input_dtype(model):
    path, _, _ = model
    meta = json.loads((path.parent / "model.json").read_text())
    assert meta["input_dtype"] == "uint8" and meta["input_scale"] == 255.0
    assert load_model(path)[1]["input_dtype"] == "uint8"


def test_probabilities_entropy_and_label_tiffs(model, tmp_path):
    path, images, _ = model
    dest = _label(tmp_path, path, images[5], "img.npy")
    labels = np.load(dest / "labels.npy")
    probs = tifffile.imread(dest / "probabilities.tif")
    ent = tifffile.imread(dest / "entropy.tif")
    lab_tif = tifffile.imread(dest / "labels.tif")
    assert probs.shape == (2, 24, 24) and probs.dtype == np.float32
    assert ent.shape == (24, 24) and ent.dtype == np.float32
    assert lab_tif.shape == (24, 24) and lab_tif.dtype == np.uint8
    np.testing.assert_array_equal(lab_tif, labels)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), labels)
    p = probs.astype(np.float64)
    np.testing.assert_allclose(ent, -(p * np.log(np.where(p > 0, p, 1))).sum(0), atol=1e-5)
    assert (ent >= 0).all() and (ent <= np.log(2) + 1e-5).all()
    assert (dest / "entropy.png").stat().st_size > 1000
    assert "mean_entropy" in json.loads((dest / "metrics.json").read_text())


def test_predict_is_argmax_of_probabilities(model):
    m, _meta = load_model(model[0])
    x = torch.as_tensor(model[1][3][..., None] / 255.0, dtype=torch.float32)
    probs = m.probabilities(x)
    assert probs.shape == (24, 24, 2) and probs.dtype == torch.float32
    assert torch.equal(m.predict(x), probs.argmax(-1))


def test_predict_refuses_a_uint8_tensor(model):
    m, _ = load_model(model[0])
    with pytest.raises(UserInputError, match="float tensor") as err:
        m.predict(torch.as_tensor(model[1][3][..., None]))
    assert len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize("variant", ["float01", "float255", "uint16", "int64", "tif_uint8"])
def test_other_encodings_of_an_image_label_identically(model, tmp_path, variant):
    path, images, _ = model
    img = images[4]
    ref = np.load(_label(tmp_path, path, img, "ref.npy") / "labels.npy")
    other = {"float01": (img / 255.0, "x.npy"), "float255": (img.astype(np.float32), "x.npy"),
             "uint16": (img.astype(np.uint16) * 257, "x.npy"), "int64": (img.astype(np.int64), "x.npy"),
             "tif_uint8": (img, "x.tif")}[variant]
    got = np.load(_label(tmp_path, path, *other) / "labels.npy")
    np.testing.assert_array_equal(got, ref)


def test_normalise_rule_and_unmappable_values(model, tmp_path, capsys):
    _, meta = load_model(model[0])
    img = model[1][2]
    x, how, _ = normalise_image(img / 255.0, meta)
    assert "as is" in how and np.allclose(x, img / 255.0)
    assert "65535" in normalise_image(img.astype(np.uint16) * 257, meta)[1]
    with pytest.raises(UserInputError, match="rescale"):
        normalise_image(img * 1000.0, meta)
    np.save(tmp_path / "far.npy", img * 1000.0)
    capsys.readouterr()
    assert main(["label", str(tmp_path / "far.npy"), "--model", str(model[0]), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rescale" in err
    assert not (tmp_path / "o").exists()


def test_stack_is_labelled_page_by_page(model, tmp_path):
    path, images, labels = model
    stack = images[3:6]
    np.save(tmp_path / "truth.npy", labels[3:6])
    dest = _label(tmp_path, path, stack, "stack.tif", "--truth", str(tmp_path / "truth.npy"))
    lab = tifffile.imread(dest / "labels.tif")
    assert lab.shape == (3, 24, 24) and lab.dtype == np.uint8
    np.testing.assert_array_equal(np.load(dest / "labels.npy"), lab)
    probs = tifffile.imread(dest / "probabilities.tif")
    assert probs.shape == (3, 2, 24, 24) and probs.dtype == np.float32
    ent = tifffile.imread(dest / "entropy.tif")
    assert ent.shape == (3, 24, 24) and ent.dtype == np.float32
    for k in range(3):
        single = np.load(_label(tmp_path, path, stack[k], f"p{k}.npy") / "labels.npy")
        np.testing.assert_array_equal(lab[k], single)
    metrics = json.loads((dest / "metrics.json").read_text())
    assert metrics["pixel_error_percent"] == pytest.approx(100 * np.mean(lab != labels[3:6]))


def test_stack_is_not_read_as_its_first_page(tmp_path, capsys):
    stack = (np.arange(3 * 8 * 8) % 256).astype(np.uint8).reshape(3, 8, 8)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    assert read_stack(tmp_path / "s.tif").shape == (3, 8, 8, 1)
    with pytest.raises(UserInputError, match="--model"):
        read_image(tmp_path / "s.tif")
    tifffile.imwrite(tmp_path / "one.tif", stack[1])
    tifffile.imwrite(tmp_path / "ij.tif", stack, imagej=True, metadata={"axes": "ZYX"})   # a Fiji stack
    np.testing.assert_array_equal(read_stack(tmp_path / "ij.tif")[..., 0], stack)
    rgb = np.stack([stack[0], stack[1], stack[2]], -1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(read_stack(tmp_path / "rgb.tif")[0], rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "one.tif")[..., 0], stack[1] / 255.0)
    capsys.readouterr()
    assert main(["label", str(tmp_path / "s.tif"), "--k", "2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model" in err
    assert not (tmp_path / "o").exists()


def test_label_values_checked_before_training(tmp_path, capsys):
    images, labels = _data(tmp_path / "d.npz")
    for k, bad in enumerate([labels * 2, labels * 2 ** 31, np.zeros_like(labels), labels + 1]):
        np.savez(tmp_path / f"bad{k}.npz", images=images, labels=bad)
        capsys.readouterr()
        assert main(["train-labeler", "--data", str(tmp_path / f"bad{k}.npz"), *ARGS, "--iterations", "1",
                     "--out", str(tmp_path / f"o{k}")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "0..J-1" in err, err
        assert not (tmp_path / f"o{k}").exists()


def test_binary_mask_0_255_is_read_as_0_1(tmp_path, capsys):
    images, labels = _data(tmp_path / "d.npz")
    np.savez(tmp_path / "mask.npz", images=images, labels=(labels * 255).astype(np.uint8))
    capsys.readouterr()
    assert main(["train-labeler", "--data", str(tmp_path / "mask.npz"), *ARGS, "--iterations", "1",
                 "--out", str(tmp_path / "o")]) == 0
    assert "0/255" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "model.json").read_text())["num_labels"] == 2
