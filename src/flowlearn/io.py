"""Atomic file output, run directories, checkpoints and PNG writing.

Every file flowlearn writes goes through :func:`atomic_write` (temporary file in
the same directory, ``fsync``, ``os.replace``), so a killed run never leaves a
half-written output behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import UserFileNotFoundError, UserInputError

__all__ = [
    "atomic_write",
    "check_out_dir",
    "ensure_out_dir",
    "save_figure",
    "save_json",
    "save_npy",
    "save_png",
    "save_tiff",
    "save_weights",
    "to_jsonable",
]


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Context manager yielding a file object; the file appears at ``path`` only on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the user's umask
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def ensure_out_dir(out, *, name: str = "out") -> Path:
    """Create the output directory ``out`` (and parents) and check it is writable.

    Raises
    ------
    ValueError
        If ``out`` exists and is not a directory, cannot be created, or is not writable.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{name} must be a directory, got existing file {str(out)!r}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{name} directory {str(out)!r} cannot be created: {exc.strerror or exc}") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserInputError(f"{name} directory {str(out)!r} is not writable")
    try:  # os.access lies for root on read-only mounts: probe for real
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".probe.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserInputError(f"{name} directory {str(out)!r} is not writable: {exc.strerror or exc}") from exc
    return out


def check_out_dir(out, *, name: str = "out") -> Path:
    """Check, without creating anything, that ``out`` could be created and written.

    Use it to fail fast before a long computation; create the directory with
    :func:`ensure_out_dir` only when there is something to write.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UserInputError(f"{name} must be a directory, got existing file {str(out)!r}")
        if not os.access(out, os.W_OK | os.X_OK):
            raise UserInputError(f"{name} directory {str(out)!r} is not writable")
        return out
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserInputError(f"{name} directory {str(out)!r} cannot be created: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"{name} directory {str(out)!r} cannot be created: {str(parent)!r} is not writable")
    return out


def existing_file(path, what: str, expected: str) -> Path:
    """``Path(path)`` after checking it names an existing regular file.

    Raises
    ------
    FileNotFoundError
        ``"{what} file '<path>' does not exist"``.
    ValueError
        ``"{what} path '<path>' is a directory, expected {expected}"``.
    """
    path = Path(path)
    if not path.exists():
        raise UserFileNotFoundError(f"{what} file {str(path)!r} does not exist")
    if path.is_dir():
        raise UserInputError(f"{what} path {str(path)!r} is a directory, expected {expected}")
    return path


def to_jsonable(obj: Any) -> Any:
    """Recursively convert tensors, arrays and numpy scalars to JSON-serialisable objects."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
    return obj


def save_json(path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    data = json.dumps(to_jsonable(obj), indent=2, sort_keys=False)
    with atomic_write(path, "w") as fh:
        fh.write(data + "\n")
    return Path(path)


def save_npy(path, array) -> Path:
    """Write an array (numpy or torch) to ``.npy``, atomically."""
    try:
        import torch

        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return Path(path)


def save_png(path, image) -> Path:
    """Write an image to PNG, atomically.

    Parameters
    ----------
    image : array, shape (H, W) or (H, W, 3) or (H, W, 4)
        uint8, or float in [0, 1] (clipped).
    """
    from PIL import Image

    try:
        import torch

        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return Path(path)


def save_figure(path, fig) -> Path:
    """Save a matplotlib figure to PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return Path(path)


def save_tiff(path, array, axes: str) -> Path:
    """Write ``array`` (uint8, uint16 or float32) as an ImageJ-compatible TIFF with ``axes`` (e.g. ``"YX"``,
    ``"ZYX"``, ``"CYX"``, ``"ZCYX"``), atomically; Fiji, napari and ``tifffile.imread`` read it back with
    the same shape and dtype."""
    import tifffile

    arr = np.ascontiguousarray(array)
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, imagej=True, metadata={"axes": axes})
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return Path(path)


def save_weights(path, state: dict) -> Path:
    """``torch.save`` a dictionary of tensors and plain values (numbers, strings, lists, dicts)
    atomically; it loads with ``torch.load(path, weights_only=True)``."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return Path(path)
