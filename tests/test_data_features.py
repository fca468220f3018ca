"""window_features against a naive per-pixel loop, incl. borders, dtypes, devices and autograd."""

import numpy as np
import pytest
import torch

from flowlearn.data.features import window_features

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _naive(image: np.ndarray, size: int) -> np.ndarray:
    h, w, c = image.shape
    r = size // 2
    out = np.zeros((h, w, size * size * c), dtype=image.dtype)
    for i in range(h):
        for j in range(w):
            feats = []
            for a in range(-r, r + 1):
                for b in range(-r, r + 1):
                    ii, jj = min(max(i + a, 0), h - 1), min(max(j + b, 0), w - 1)
                    feats.extend(image[ii, jj, :])
            out[i, j] = feats
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,size", [((7, 9, 3), 3), ((6, 5, 1), 3), ((5, 8, 2), 5), ((4, 4, 3), 1), ((2, 3, 1), 5)])
def test_matches_naive_loop(shape, size, dtype, device):
    rng = np.random.default_rng(0)
    image = rng.normal(size=shape)
    got = window_features(torch.as_tensor(image, dtype=dtype, device=device), size)
    assert got.dtype == dtype and got.device.type == device
    assert got.shape == shape[:2] + (size * size * shape[2],)
    expected = _naive(image.astype(np.float32 if dtype == torch.float32 else np.float64), size)
    np.testing.assert_array_equal(got.cpu().numpy(), expected)  # pure copies: exact


def test_default_size_three_and_centre_channel_block_is_the_image():
    image = torch.rand(6, 7, 3)
    feats = window_features(image)
    assert feats.shape == (6, 7, 27)
    torch.testing.assert_close(feats[:, :, 4 * 3:5 * 3], image, rtol=0, atol=0)


def test_size_one_is_identity():
    image = torch.rand(5, 4, 2)
    torch.testing.assert_close(window_features(image, 1), image, rtol=0, atol=0)


def test_numpy_input_returns_torch_tensor_with_same_dtype():
    image = np.random.default_rng(1).random((5, 6, 3)).astype(np.float32)
    feats = window_features(image)
    assert isinstance(feats, torch.Tensor) and feats.dtype == torch.float32
    np.testing.assert_array_equal(feats.numpy(), _naive(image, 3))


def test_numpy_views_with_negative_strides():
    image = np.random.default_rng(2).random((4, 6, 2))
    flipped = image[::-1, ::-1]
    np.testing.assert_array_equal(window_features(flipped).numpy(), _naive(flipped.copy(), 3))


def test_gradient_counts_window_memberships():
    """d sum(F) / d image[p] = number of (pixel, window offset) pairs reading p (replicate padding)."""
    image = torch.rand(5, 6, 2, requires_grad=True)
    window_features(image, 3).sum().backward()
    h, w = 5, 6
    counts = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            for a in (-1, 0, 1):
                for b in (-1, 0, 1):
                    counts[min(max(i + a, 0), h - 1), min(max(j + b, 0), w - 1)] += 1
    np.testing.assert_array_equal(image.grad.numpy(), np.repeat(counts[:, :, None], 2, axis=2))


@pytest.mark.parametrize(
    "image,size,error,match",
    [
        (torch.zeros(4, 4, 1), 2, ValueError, "size must be odd, got 2"),
        (torch.zeros(4, 4, 1), 0, ValueError, "size must be >= 1, got 0"),
        (torch.zeros(4, 4, 1), 3.0, TypeError, "size must be an integer"),
        (torch.zeros(4, 4), 3, ValueError, r"image \(H, W, C\) must be 3-dimensional, got array of shape \(4, 4\)"),
        (torch.zeros(0, 4, 1), 3, ValueError, "non-empty"),
        ([[[1.0]]], 3, TypeError, "torch.Tensor or numpy array"),
    ],
)
def test_invalid_input(image, size, error, match):
    with pytest.raises(error, match=match):
        window_features(image, size)
