"""Reading images and turning images and label maps into pictures (uint8 RGB)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .._checks import UserInputError, UserTypeError, check_int, check_memory
from ..io import _numpy, check_npy, existing_file

__all__ = ["colorize_labels", "label_palette", "overlay_labels", "read_image", "read_stack", "to_display"]

MAX_CHANNELS = 4
MAX_PALETTE = 1 << 16

# tab20 (matplotlib): the ten strong colours first, then their light variants.
_FIXED_PALETTE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    [174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213],
    [196, 156, 148], [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229]], dtype=np.uint8)


def _check_real(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise UserInputError(f"image {str(path)!r} must hold real numbers, got dtype {arr.dtype}")
    if arr.size == 0:   # on the array as stored, so that the message shows the shape the user wrote
        raise UserInputError(f"image {str(path)!r} is empty, got shape {arr.shape}")
    return arr


def _npy_stack(path: Path, ndims: tuple, expected: str) -> np.ndarray:
    """The real-valued array of a ``.npy`` file as ``(Z, H, W, C)``, read without pickle after its header is
    checked (:func:`~flowlearn.io.check_npy`: declared size against the file and the memory available)."""
    check_npy(path, f"image {str(path)!r}", extra_per_element=9.0, hint="use a smaller image")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserInputError(f"cannot read {str(path)!r} as a .npy array: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise UserInputError(f"{str(path)!r} does not hold a single .npy array")
    if _check_real(arr, path).ndim not in ndims:
        raise UserInputError(f"image {str(path)!r} must be {expected}, got shape {arr.shape}")
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return arr if arr.ndim == 4 else arr[None]


def _open_pillow(path: Path):
    """``Image.open`` with a pixel bound checked before decoding: ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression
    bomb -- a small PNG that decodes to gigabytes -- is a one-line error naming it) and the memory available."""
    import warnings

    from PIL import Image

    bound = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
            pixels = img.size[0] * img.size[1]
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(found.group(1)) if found else bound + 1
    if bound is not None and pixels > bound:
        raise UserInputError(f"image {str(path)!r} has {pixels:,} pixels, more than the bound of {bound:,} pixels "
                             f"(PIL.Image.MAX_IMAGE_PIXELS) that flowlearn decodes (a decompression bomb?); crop or "
                             f"tile the image, or raise the bound in the API")
    check_memory(f"decoding image {str(path)!r} ({img.size[0]}x{img.size[1]})", pixels * 4 * 17.0,
                 hint="crop or tile the image")
    return img


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import UnidentifiedImageError

    try:
        with _open_pillow(path) as img:
            img.load()
            if img.mode in ("1", "L", "LA", "La"):
                return np.asarray(img.convert("L"), dtype=np.float64) / 255.0
            if img.mode.startswith("I") or img.mode == "F":    # 16/32-bit integers / 65535, floats unscaled
                return _scale_unit(np.asarray(img), path)
            return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    except UnidentifiedImageError as exc:
        raise UserInputError(f"{str(path)!r} is not an image file Pillow can read") from exc
    except (OSError, SyntaxError) as exc:  # truncated or corrupt files
        raise UserInputError(f"cannot read image {str(path)!r}: {exc}") from exc


TIFF_SUFFIXES = (".tif", ".tiff")


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF file (tifffile) as ``(Z, H, W, C)`` in its own dtype: every page of every series of the first
    series' shape (a multi-page stack is never read as its first page); ``S`` (samples) axes are channels."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = list(tif.series)
            if not series:
                raise UserInputError(f"image {str(path)!r} holds no TIFF image data")
            if any(s.shape != series[0].shape or s.dtype != series[0].dtype for s in series[1:]):
                raise UserInputError(f"image {str(path)!r} holds {len(series)} TIFF series of different shapes "
                                     f"({', '.join(str(s.shape) for s in series[:3])}); save one (Z, H, W) stack")
            axes = ("Q" if len(series) > 1 else "") + series[0].axes
            count = len(series) * int(np.prod(series[0].shape, dtype=np.float64))   # float: no overflow
            check_memory(f"reading TIFF {str(path)!r} ({len(series)} x {series[0].shape} {series[0].dtype})",
                         count * (2 * series[0].dtype.itemsize + 9.0), hint="crop the stack or read fewer pages")
            arr = np.stack([s.asarray() for s in series]) if len(series) > 1 else series[0].asarray()
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        if isinstance(exc, UserInputError):
            raise
        raise UserInputError(f"cannot read TIFF image {str(path)!r}: {exc}") from None
    _check_real(arr, path)
    # RGB(A) samples (contiguous or planar) are the channel axis
    arr = np.moveaxis(arr, axes.index("S"), -1) if "S" in axes else arr[..., None]
    arr = arr if arr.ndim == 4 else arr[None]
    if arr.ndim != 4:
        raise UserInputError(f"image {str(path)!r} is a TIFF of shape {series[0].shape} (axes {axes}); expected "
                             f"(H, W), (H, W, C), (Z, H, W) or (Z, H, W, C)")
    return arr


def _scale_unit(arr: np.ndarray, path: Path) -> np.ndarray:
    """An integer image scaled to ``[0, 1]`` like Pillow's modes (8-bit / 255, else / 65535); floats unscaled."""
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float64)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise UserInputError(f"image {str(path)!r} is an integer image with values outside [0, 65535] (range "
                             f"[{arr.min():g}, {arr.max():g}]); cannot scale to [0, 1]")
    return arr.astype(np.float64) / 65535.0


def _check_stack(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.shape[3] > MAX_CHANNELS:
        raise UserInputError(f"image {str(path)!r} must have at most {MAX_CHANNELS} channels, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise UserInputError(f"image {str(path)!r} must be finite, got {int(np.sum(~np.isfinite(arr)))} NaN/inf values")
    return np.ascontiguousarray(arr)


def read_stack(path) -> np.ndarray:
    """Read an image or a stack of images into ``(Z, H, W, C)``, keeping the file's dtype and values.

    * ``.tif`` / ``.tiff`` (tifffile): every page; ``(H, W)`` gives ``Z = 1``, ``(Z, H, W)`` a stack, RGB
      samples become channels; the dtype is the file's (uint8, uint16, float32, ...), unscaled.
    * ``.npy``: ``(H, W)`` or ``(H, W, C)`` (``Z = 1``), or ``(Z, H, W, C)``; the array's own dtype.
    * other formats (Pillow): :func:`read_image`, i.e. float64 scaled to ``[0, 1]``, ``Z = 1``.
    """
    path = existing_file(path, "image", "an image file")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _check_stack(_read_tiff(path), path)
    if suffix == ".npy":
        return _check_stack(_npy_stack(path, (2, 3, 4), "(H, W), (H, W, C) or (Z, H, W, C)"), path)
    return read_image(path)[None]


def read_image(path) -> np.ndarray:
    """Read an image file into a float64 array of shape (H, W, C).

    * PNG, JPEG and the other formats Pillow reads: scaled to ``[0, 1]`` (8-bit / 255, 16-bit ``I;16`` / 65535,
      32-bit float (mode F) unscaled); RGBA/palette/CMYK become RGB (alpha dropped, ``C = 3``), grey (L, LA,
      1-bit) ``C = 1``.  Multi-frame files give their first frame, except TIFF.
    * ``.tif`` / ``.tiff`` (tifffile): a single page, scaled like Pillow's modes; a multi-page stack is an error
      (read it with :func:`read_stack`).
    * ``.npy``: a real (H, W) or (H, W, C) array with ``C <= 4``, values unchanged; (H, W) becomes (H, W, 1).

    Raises ``FileNotFoundError`` for a missing file and a one-line ``UserInputError`` naming the path for
    anything else (not an image, wrong dimensions, empty, NaN/inf, more than 4 channels, a decompression bomb
    beyond ``PIL.Image.MAX_IMAGE_PIXELS``, more memory than is available).
    """
    path = existing_file(path, "image", "an image file")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        stack = _read_tiff(path)
        if stack.shape[0] > 1:
            raise UserInputError(f"image {str(path)!r} is a stack of {stack.shape[0]} pages {stack.shape[1:3]}; "
                                 f"label stacks with 'flowlearn label STACK.tif --model MODEL.pt'")
        return _scale_unit(_check_stack(stack, path)[0], path)
    if suffix == ".npy":
        stack = _npy_stack(path, (2, 3), "2-dimensional (H, W) or 3-dimensional (H, W, C)")
        return _check_stack(stack, path)[0].astype(np.float64)
    arr = _check_real(_read_pillow(path), path)
    return _check_stack((arr[:, :, None] if arr.ndim == 2 else arr)[None], path)[0]


def _to_numpy(x) -> np.ndarray:
    """``x`` (a torch tensor on any device, or array-like) as a numpy array."""
    return np.asarray(_numpy(x))


def _float_rgb(image) -> np.ndarray:
    """Image (H, W) or (H, W, C) -> float64 RGB (H, W, 3) clipped to [0, 1] (NaN -> 0)."""
    arr = _to_numpy(image).astype(np.float64)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] == 0:
        raise UserInputError(f"image must have shape (H, W) or (H, W, C), got shape {arr.shape}")
    arr = np.clip(np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    if arr.shape[2] in (3, 4):
        return arr[:, :, :3]
    grey = arr[:, :, :1] if arr.shape[2] == 1 else arr.mean(axis=2, keepdims=True)
    return np.repeat(grey, 3, axis=2)


def _quantize(rgb: np.ndarray) -> np.ndarray:
    return np.floor(rgb * 255.0 + 0.5).astype(np.uint8)


def to_display(image) -> np.ndarray:
    """A float image ``(H, W)`` or ``(H, W, C)`` (array or tensor) as 8-bit RGB ``(H, W, 3)``: values clipped to
    ``[0, 1]`` (NaN -> 0) and mapped by ``floor(255 x + 0.5)``; ``C = 1`` (or 2-D) grey, ``C = 3`` RGB, ``C = 4``
    RGB without alpha, any other ``C`` the grey level of the channel mean."""
    return _quantize(_float_rgb(image))


def _halton(indices: np.ndarray, base: int) -> np.ndarray:
    """Radical inverse of the integers ``indices`` in ``base`` (van der Corput sequence)."""
    result = np.zeros(indices.shape, dtype=np.float64)
    n = indices.astype(np.int64).copy()
    scale = 1.0 / base
    while np.any(n > 0):
        result += (n % base) * scale
        n //= base
        scale /= base
    return result


def label_palette(num_labels: int) -> np.ndarray:
    """``num_labels`` (at most 65536) distinct uint8 RGB colours ``(num_labels, 3)``, deterministic.

    The first 20 are matplotlib's ``tab20`` colours (strong ones first); further colours are points of the 3-D
    Halton sequence (bases 2, 3, 5) quantised to 8 bits, skipping colours already in the palette.
    ``label_palette(n)[:m] == label_palette(m)`` for ``m <= n``.
    """
    num_labels = check_int("num_labels", num_labels, minimum=1, maximum=MAX_PALETTE)
    if num_labels <= len(_FIXED_PALETTE):
        return _FIXED_PALETTE[:num_labels].copy()
    count = 2 * num_labels
    while True:
        idx = np.arange(1, count + 1)
        extra = np.stack([_halton(idx, b) for b in (2, 3, 5)], axis=1)
        candidates = np.concatenate([_FIXED_PALETTE, np.floor(extra * 256).astype(np.uint8)])
        keys = candidates.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
        _, first = np.unique(keys, return_index=True)
        first.sort()
        if first.size >= num_labels:
            return candidates[first[:num_labels]]
        count *= 2


def _check_labels(labels) -> np.ndarray:
    arr = _to_numpy(labels)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise UserTypeError(f"labels must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise UserInputError(f"labels must have shape (H, W), got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise UserInputError(f"labels must be >= 0, got minimum {arr.min()}")
    return arr.astype(np.int64, copy=False)


def _check_palette(palette, labels: np.ndarray) -> np.ndarray:
    needed = int(labels.max()) + 1 if labels.size else 1
    if palette is None:
        return label_palette(needed)
    pal = _to_numpy(palette)
    if pal.ndim != 2 or pal.shape[1] != 3:
        raise UserInputError(f"palette must have shape (J, 3), got shape {pal.shape}")
    if pal.shape[0] < needed:
        raise UserInputError(f"palette has {pal.shape[0]} colours but labels go up to {needed - 1}")
    if not np.issubdtype(pal.dtype, np.number) or (pal.size and (pal.min() < 0 or pal.max() > 255)):
        raise UserInputError(f"palette values must be numbers in [0, 255], got dtype {pal.dtype}")
    if pal.dtype != np.uint8 and np.any(pal != np.round(pal)):
        raise UserInputError("palette values must be integers in [0, 255] (uint8 colours)")
    return pal.astype(np.uint8)


def colorize_labels(labels, palette=None) -> np.ndarray:
    """Colour a label map: ``out[i, j] = palette[labels[i, j]]``, uint8 ``(H, W, 3)``.

    Parameters
    ----------
    labels : integer array, shape (H, W), values >= 0
    palette : array, shape (J, 3), values in [0, 255], optional
        Default :func:`label_palette` with ``max(labels) + 1`` colours.
    """
    labels = _check_labels(labels)
    return _check_palette(palette, labels)[labels]


def overlay_labels(image, labels, alpha: float = 0.5, palette=None) -> np.ndarray:
    """Blend label colours of opacity ``alpha`` in [0, 1] over an image: ``(1 - alpha) * image + alpha *
    palette[labels] / 255``, uint8 RGB; ``image`` as by :func:`to_display`, ``labels``, ``palette`` as by
    :func:`colorize_labels`."""
    try:
        alpha = float(alpha)
    except (TypeError, ValueError) as exc:
        raise UserTypeError(f"alpha must be a number, got {alpha!r}") from exc
    if not 0.0 <= alpha <= 1.0:
        raise UserInputError(f"alpha must lie in [0, 1], got {alpha!r}")
    labels = _check_labels(labels)
    rgb = _float_rgb(image)
    if rgb.shape[:2] != labels.shape:
        raise UserInputError(f"image and labels must have the same (H, W), got image shape "
                         f"{_to_numpy(image).shape} and labels shape {labels.shape}")
    colours = _check_palette(palette, labels)[labels].astype(np.float64) / 255.0
    return _quantize((1.0 - alpha) * rgb + alpha * colours)
