"""Atomic file output, run directories, checkpoints and PNG writing.

Every file flowlearn writes goes through :func:`atomic_write` (temporary file in
the same directory, ``fsync``, ``os.replace``), so a killed run never leaves a
half-written output behind.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import UserFileNotFoundError, UserInputError, UserOSError, check_memory

__all__ = [
    "atomic_write",
    "check_npy",
    "check_npz",
    "check_out_dir",
    "describe_os_error",
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


#: errno values that are the environment's doing (a full disk, a removed directory, a long name, permissions):
#: reported as one line naming the path, never as a flowlearn bug
ENVIRONMENT_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "ENOENT", "ENOTDIR", "EISDIR", "ENAMETOOLONG", "EROFS", "EACCES", "EPERM", "EIO",
    "EFBIG", "ELOOP", "EMFILE", "ENFILE", "ESTALE") if hasattr(errno, name))


def describe_os_error(exc: OSError, path=None, *, action: str | None = "write") -> str:
    """One line for an operating-system error: ``cannot write 'out/labels.npy': No space left on device
    (ENOSPC); free disk space or choose another --out`` (``action=None``: "write" for the errors only a write
    meets, "access" otherwise)."""
    path = Path(exc.filename if path is None and exc.filename is not None else path or "?")
    if action is None:
        writes = {errno.ENOSPC, errno.EFBIG, errno.EROFS, getattr(errno, "EDQUOT", -1)}
        action = "write" if exc.errno in writes else "access"
    return f"cannot {action} {str(path)!r}: {os_error_reason(exc, path, action=action)}"


def os_error_reason(exc: OSError, path=None, *, action: str = "write") -> str:
    """The reason and the remedy of an operating-system error, without the path:
    ``No space left on device (ENOSPC); free disk space or choose another --out``."""
    path = Path(exc.filename if path is None and exc.filename is not None else path or "?")
    code = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    reason = (exc.strerror or str(exc)) + (f" ({code})" if code else "")
    hint = {errno.ENOSPC: "free disk space or choose another --out",
            getattr(errno, "EDQUOT", -1): "free disk space (quota exceeded) or choose another --out",
            errno.ENAMETOOLONG: "use a shorter name (a path component may have at most 255 bytes)",
            errno.EROFS: "choose a directory on a writable file system",
            errno.EACCES: "check the permissions or choose another path",
            errno.EPERM: "check the permissions or choose another path"}.get(exc.errno, "")
    with contextlib.suppress(OSError):
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) and action == "write" and not path.parent.is_dir():
            hint = f"the directory {str(path.parent)!r} no longer exists (removed during the run?); run again"
    return reason + (f"; {hint}" if hint else "")


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Context manager yielding a file object; the file appears at ``path`` only on success.

    An operating-system error of the environment (:data:`ENVIRONMENT_ERRNOS`: disk full, directory removed,
    name too long, ...) becomes a one-line :class:`~flowlearn._checks.UserOSError` naming ``path``; the
    temporary file is removed, so nothing half-written is left."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        raise UserOSError(describe_os_error(exc, path)) from exc
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the user's umask
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, UserInputError) and exc.errno in ENVIRONMENT_ERRNOS:
            raise UserOSError(describe_os_error(exc, path)) from exc
        raise


def ensure_out_dir(out, *, name: str = "out") -> Path:
    """Create the output directory ``out`` (and parents) and check it is writable.

    Raises
    ------
    ValueError
        If ``out`` exists and is not a directory, cannot be created, or is not writable.
    """
    out = Path(out)
    try:
        exists = out.exists()
    except OSError as exc:   # ENAMETOOLONG, ELOOP, EACCES on a parent
        raise UserInputError(f"{name} directory {str(out)!r} cannot be used: {os_error_reason(exc)}") from None
    if exists and not out.is_dir():
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
    try:
        return _check_out_dir(Path(out), name)
    except OSError as exc:   # ENAMETOOLONG (a 300-character component), ELOOP, EACCES on a parent
        if isinstance(exc, UserInputError):
            raise
        raise UserInputError(f"{name} directory {str(out)!r} cannot be used: {os_error_reason(exc)}") from None


def _check_out_dir(out: Path, name: str) -> Path:
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
    try:
        exists = path.exists()
    except OSError as exc:   # ENAMETOOLONG, ELOOP, EACCES on a parent
        raise UserInputError(f"{what} file {str(path)!r} cannot be read: {os_error_reason(exc, action='read')}") \
            from None
    if not exists:
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


# ------------------------------------------------------------------------------------- .npy / .npz headers
_NPY_MAGIC = b"\x93NUMPY"


def _npy_header(fh, where: str) -> tuple[tuple, np.dtype]:
    """``(shape, dtype)`` from the header of the ``.npy`` stream ``fh`` (positioned at its start)."""
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = npformat.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = npformat.read_array_header_2_0(fh)
        else:
            shape, _, dtype = npformat._read_array_header(fh, version)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise UserInputError(f"{where} has no readable .npy header ({exc})") from None
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise UserInputError(f"{where} has a malformed .npy header (shape {shape!r})")
    return shape, np.dtype(dtype)


def _check_declared(where: str, shape, dtype, data_bytes: int, extra_per_element: float, hint: str) -> None:
    """Refuse an array whose header declares more bytes than the file holds, or more memory than is available."""
    declared = math.prod(shape) * dtype.itemsize
    if data_bytes < declared:
        raise UserInputError(f"{where} declares a {dtype} array of shape {shape} ({declared:,} bytes) but holds "
                             f"{max(data_bytes, 0):,} bytes of data: the file is truncated or not a real .npy array")
    count = declared // max(dtype.itemsize, 1)
    check_memory(f"reading {where} (a {dtype} array of shape {shape})", declared + extra_per_element * count,
                 hint=hint)


def check_npy(path, where: str, *, extra_per_element: float = 0.0, hint: str = "use a smaller array") -> None:
    """Check a ``.npy`` file's header before :func:`numpy.load` allocates what it declares: the magic string,
    a readable header, as many data bytes as the shape and dtype declare, and memory for the array plus
    ``extra_per_element`` bytes per element (the reader's copies).  A 192-byte file that declares a 3.6 TiB
    array is a one-line :class:`UserInputError`, not a 3.6 TiB allocation."""
    path = Path(path)
    with open(path, "rb") as fh:
        if fh.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise UserInputError(f"{where} is not a NumPy .npy file (missing the .npy header)")
        fh.seek(0)
        shape, dtype = _npy_header(fh, where)
        data_bytes = os.fstat(fh.fileno()).st_size - fh.tell()
    if not dtype.hasobject:   # object arrays are refused by np.load(allow_pickle=False) with its own message
        _check_declared(where, shape, dtype, data_bytes, extra_per_element, hint)


def check_npz(path, where: str, members, *, extra_per_element: float = 0.0,
              hint: str = "use smaller arrays") -> None:
    """:func:`check_npy` for the arrays ``members`` (names without ``.npy``) of an ``.npz`` archive: each
    header is read from the archive and checked against the member's uncompressed size and, all together,
    against the memory available.  Missing members and unreadable archives are left to the loader."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return
    total, count = 0, 0
    with archive:
        for name in members:
            try:
                info = archive.getinfo(f"{name}.npy")
            except KeyError:
                continue
            with archive.open(info) as fh:
                shape, dtype = _npy_header(fh, f"{where} array {name!r}")
                data_bytes = info.file_size - fh.tell()
            if dtype.hasobject:
                continue
            declared = math.prod(shape) * dtype.itemsize
            if data_bytes < declared:
                _check_declared(f"{where} array {name!r}", shape, dtype, data_bytes, 0.0, hint)
            total += declared
            count += declared // max(dtype.itemsize, 1)
    check_memory(f"reading {where} ({total:,} bytes of arrays)", total + extra_per_element * count, hint=hint)
