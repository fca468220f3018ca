"""``flowlearn voronoi`` end to end through flowlearn.cli.main.main."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from flowlearn.cli import main as cli_main
from flowlearn.data import make_voronoi, nearest_prototype_labels
from flowlearn.evaluation import label_error

FILES = ["image.npy", "image.png", "clean.png", "labels.npy", "labels.png", "prototypes.npy", "meta.json",
         "manifest.json", ".flowlearn.lock"]


@pytest.fixture
def run_cli(monkeypatch):
    """main.main with only this subcommand registered: other subcommands may be mid-edit."""
    monkeypatch.setattr(cli_main, "COMMANDS", ["voronoi"])
    return cli_main.main


def test_voronoi_is_registered():
    assert "voronoi" in cli_main.COMMANDS


@pytest.mark.parametrize("scenario,size,channels", [("boundary", "40", 1), ("colors", "24x36", 3)])
def test_end_to_end(run_cli, tmp_path, capsys, scenario, size, channels):
    out = tmp_path / "run" / "nested"
    rc = run_cli(["voronoi", "--scenario", scenario, "--size", size, "--noise", "0.3", "--seed", "4",
                  "--cells", "6", "--out", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # no stray temporary files
    shape = (40, 40) if size == "40" else (24, 36)
    expected = make_voronoi(shape, scenario, noise=0.3, seed=4, num_cells=6)
    image = np.load(out / "image.npy")
    np.testing.assert_array_equal(image, expected.image)
    assert image.shape == shape + (channels,) and (image.min() < 0 or image.max() > 1)  # unclipped
    np.testing.assert_array_equal(np.load(out / "labels.npy"), expected.labels)
    np.testing.assert_array_equal(np.load(out / "prototypes.npy"), expected.prototypes)
    for name in ("image.png", "clean.png", "labels.png"):
        with Image.open(out / name) as png:
            assert png.size == (shape[1], shape[0])
    with Image.open(out / "clean.png") as png:
        clean_png = np.asarray(png, dtype=np.float64) / 255
    np.testing.assert_array_equal(clean_png.reshape(expected.clean.shape[:2] + (-1,))[:, :, :channels],
                                  expected.clean)  # corner colours survive 8 bits exactly
    meta = json.loads((out / "meta.json").read_text())
    assert meta["scenario"] == scenario and meta["size"] == list(shape)
    assert meta["noise"] == 0.3 and meta["seed"] == 4 and meta["num_cells"] == 6
    rounding = label_error(nearest_prototype_labels(expected.image, expected.prototypes), expected.labels)
    assert meta["rounding_label_error_percent"] == pytest.approx(rounding, abs=1e-12)
    assert "rounding error" in capsys.readouterr().out


def test_defaults(run_cli, tmp_path):
    assert run_cli(["voronoi", "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["scenario"] == "colors" and meta["size"] == [128, 128]
    assert meta["noise"] == 0.6 and meta["num_cells"] == 32
    assert 45 < meta["rounding_label_error_percent"] < 55


@pytest.mark.parametrize(
    "args,match",
    [
        (["--noise", "-1"], "noise must be finite and >= 0, got -1"),
        (["--noise", "nan"], "noise must be finite"),
        (["--size", "4"], "size must be >= 8, got 4"),
        (["--size", "16x4"], r"width\) must be >= 8, got 4"),
        (["--cells", "1"], "num_cells must be >= 2, got 1"),
        (["--seed", "-3"], "seed must be >= 0, got -3"),
    ],
)
def test_bad_values_exit_2_and_write_nothing(run_cli, tmp_path, capsys, args, match):
    out = tmp_path / "out"
    assert run_cli(["voronoi", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowlearn voronoi: error:")
    assert re.search(match, err)
    assert not out.exists()


def test_out_is_an_existing_file(run_cli, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert run_cli(["voronoi", "--out", str(target)]) == 2
    assert "must be a directory" in capsys.readouterr().err
    assert target.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.parametrize("args", [["--scenario", "colour"], ["--size", "abc"], ["--noise", "x"], []])
def test_argparse_errors_exit_2(run_cli, tmp_path, capsys, args):
    out = ["--out", str(tmp_path / "o")] if args else []  # [] also omits the required --out
    with pytest.raises(SystemExit) as exc:
        run_cli(["voronoi", *args, *out])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
