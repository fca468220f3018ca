"""read_image, to_display, label_palette, colorize_labels, overlay_labels."""

import numpy as np
import pytest
import torch
from PIL import Image

from flowlearn.data import colorize_labels, read_image
from flowlearn.data.images import label_palette, overlay_labels, to_display
from flowlearn.io import save_png


# ----------------------------------------------------------------------------- read_image
def test_png_rgb_round_trip_within_half_a_grey_level(tmp_path):
    image = np.random.default_rng(0).random((9, 13, 3))
    save_png(tmp_path / "a.png", image)
    back = read_image(tmp_path / "a.png")
    assert back.shape == (9, 13, 3) and back.dtype == np.float64
    assert np.abs(back - image).max() <= 0.5 / 255 + 1e-12
    assert back.min() >= 0 and back.max() <= 1


def test_png_grey_gives_one_channel(tmp_path):
    image = np.random.default_rng(1).random((6, 5, 1))
    save_png(tmp_path / "g.png", image)
    back = read_image(str(tmp_path / "g.png"))
    assert back.shape == (6, 5, 1)
    assert np.abs(back - image).max() <= 0.5 / 255 + 1e-12


def test_rgba_drops_alpha_and_palette_becomes_rgb(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 256, size=(4, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba[:, :, :3] / 255.0)
    rgb = Image.fromarray(rgba[:, :, :3], mode="RGB")
    pal = rgb.quantize(colors=8)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")) / 255.0)


def test_sixteen_bit_grey_png(tmp_path):
    values = np.array([[0, 1, 1000], [40000, 65534, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    back = read_image(tmp_path / "g16.png")
    assert back.shape == (2, 3, 1)
    np.testing.assert_allclose(back[:, :, 0], values / 65535.0, rtol=0, atol=1e-15)


def test_float_tiff_is_returned_unscaled(tmp_path):
    values = np.array([[-1.5, 0.25], [3.0, 0.0]], dtype=np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[:, :, 0], values.astype(np.float64))


def test_jpeg_reads_as_rgb_in_unit_range(tmp_path):
    image = np.full((8, 8, 3), 0.5)
    save_png(tmp_path / "tmp.png", image)
    with Image.open(tmp_path / "tmp.png") as png:
        png.save(tmp_path / "x.jpg", quality=95)
    back = read_image(tmp_path / "x.jpg")
    assert back.shape == (8, 8, 3) and np.abs(back - 0.5).max() < 0.02


@pytest.mark.parametrize("shape", [(5, 4), (5, 4, 1), (5, 4, 3), (3, 2, 4)])
def test_npy_round_trip_is_exact_and_unclipped(tmp_path, shape):
    image = np.random.default_rng(3).normal(scale=3.0, size=shape)
    np.save(tmp_path / "a.npy", image)
    back = read_image(tmp_path / "a.npy")
    np.testing.assert_array_equal(back, image.reshape(shape[:2] + (-1,)))
    assert back.dtype == np.float64 and back.ndim == 3


def test_npy_float32_and_int_become_float64_unchanged(tmp_path):
    np.save(tmp_path / "f.npy", np.array([[0.25, -7.5]], dtype=np.float32))
    np.save(tmp_path / "i.npy", np.array([[3, 400]], dtype=np.int32))
    np.testing.assert_array_equal(read_image(tmp_path / "f.npy")[:, :, 0], [[0.25, -7.5]])
    np.testing.assert_array_equal(read_image(tmp_path / "i.npy")[:, :, 0], [[3.0, 400.0]])


def _write(path, content):
    path.write_text(content)
    return path


@pytest.mark.parametrize(
    "name,make,error,match",
    [
        ("x.png", lambda p: _write(p, "this is text, not a picture"), ValueError, "x.png.*not an image"),
        ("nan.npy", lambda p: np.save(p, np.array([[0.0, np.nan]])), ValueError, "nan.npy.*must be finite"),
        ("inf.npy", lambda p: np.save(p, np.full((2, 2, 1), np.inf)), ValueError, "inf.npy.*must be finite"),
        ("v.npy", lambda p: np.save(p, np.zeros(5)), ValueError, r"v.npy.*must be 2-dimensional.*got shape \(5,\)"),
        ("t.npy", lambda p: np.save(p, np.zeros((2, 2, 2, 2))), ValueError, r"t.npy.*got shape \(2, 2, 2, 2\)"),
        ("e.npy", lambda p: np.save(p, np.zeros((0, 3))), ValueError, r"e.npy.*empty, got shape \(0, 3\)"),
        ("c.npy", lambda p: np.save(p, np.zeros((2, 2, 5))), ValueError, "c.npy.*at most 4 channels"),
        ("s.npy", lambda p: np.save(p, np.array([["a", "b"]])), ValueError, "s.npy.*real numbers"),
        ("bad.npy", lambda p: _write(p, "not npy"), ValueError, "bad.npy.*not a NumPy .npy file"),
    ],
)
def test_read_image_errors_name_the_path(tmp_path, name, make, error, match):
    path = tmp_path / name
    make(path)
    with pytest.raises(error, match=match):
        read_image(path)


def test_read_image_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png.*does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="is a directory"):
        read_image(tmp_path)


# ----------------------------------------------------------------------------- display
def test_to_display_clips_and_handles_channels():
    grey = np.array([[[-1.0], [0.0]], [[0.5], [2.0]]])
    out = to_display(grey)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], [[0, 0], [128, 255]])
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])
    rgb = np.random.default_rng(4).random((3, 4, 3))
    np.testing.assert_array_equal(to_display(rgb), np.floor(rgb * 255 + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(to_display(np.concatenate([rgb, np.zeros((3, 4, 1))], 2)), to_display(rgb))
    np.testing.assert_array_equal(to_display(rgb[:, :, 0]), to_display(rgb[:, :, :1]))
    np.testing.assert_array_equal(to_display(torch.as_tensor(rgb)), to_display(rgb))
    two = np.stack([np.zeros((2, 2)), np.ones((2, 2))], axis=2)
    np.testing.assert_array_equal(to_display(two), np.full((2, 2, 3), 128, dtype=np.uint8))  # channel mean
    assert to_display(np.array([[[np.nan]]]))[0, 0, 0] == 0
    with pytest.raises(ValueError, match=r"shape \(H, W\) or \(H, W, C\), got shape \(3,\)"):
        to_display(np.zeros(3))


@pytest.mark.parametrize("num_labels", [1, 8, 20, 21, 300, 5000])
def test_label_palette_distinct_deterministic_prefix_stable(num_labels):
    pal = label_palette(num_labels)
    assert pal.shape == (num_labels, 3) and pal.dtype == np.uint8
    assert len({tuple(c) for c in pal}) == num_labels
    np.testing.assert_array_equal(pal, label_palette(num_labels))
    np.testing.assert_array_equal(label_palette(num_labels + 7)[:num_labels], pal)


def test_label_palette_invalid():
    with pytest.raises(ValueError, match="num_labels must be >= 1, got 0"):
        label_palette(0)
    with pytest.raises(TypeError, match="num_labels must be an integer"):
        label_palette(2.0)


def test_colorize_labels():
    labels = np.array([[0, 1, 2], [2, 2, 0]])
    np.testing.assert_array_equal(colorize_labels(labels), label_palette(3)[labels])
    palette = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    out = colorize_labels(torch.as_tensor(labels), palette)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, palette[labels])
    with pytest.raises(ValueError, match="palette has 2 colours but labels go up to 2"):
        colorize_labels(labels, palette[:2])
    with pytest.raises(ValueError, match="labels must be >= 0, got minimum -1"):
        colorize_labels(labels - 1)
    with pytest.raises(TypeError, match="labels must be an integer array"):
        colorize_labels(labels.astype(float))
    with pytest.raises(ValueError, match=r"labels must have shape \(H, W\)"):
        colorize_labels(labels[0])
    with pytest.raises(ValueError, match=r"palette values must be numbers in \[0, 255\]"):
        colorize_labels(labels, palette * 100)


def test_overlay_labels_blends():
    rng = np.random.default_rng(5)
    image = rng.random((4, 5, 1)) * 1.4 - 0.2  # partly outside [0, 1]: clipped
    labels = rng.integers(0, 3, size=(4, 5))
    np.testing.assert_array_equal(overlay_labels(image, labels, alpha=0.0), to_display(image))
    np.testing.assert_array_equal(overlay_labels(image, labels, alpha=1.0), colorize_labels(labels))
    expected = 0.7 * np.repeat(np.clip(image, 0, 1), 3, axis=2) + 0.3 * label_palette(3)[labels] / 255.0
    np.testing.assert_array_equal(overlay_labels(image, labels, alpha=0.3), np.floor(expected * 255 + 0.5))
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\], got 1.5"):
        overlay_labels(image, labels, alpha=1.5)
    with pytest.raises(ValueError, match="same \\(H, W\\)"):
        overlay_labels(image, labels[:, :4])
