"""Atomic file output, output directories and checked ``.npy``/``.npz`` headers.

Every file flowlearn writes goes through :func:`atomic_write` (temporary file in the same directory, ``fsync``,
``os.replace``), so a killed run never leaves a half-written output behind."""

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

__all__ = ["atomic_write", "check_npy", "check_npz", "check_out_dir", "describe_os_error", "ensure_out_dir",
           "save_figure", "save_json", "save_npy", "save_png", "save_tiff", "save_weights", "to_jsonable"]


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
    """The reason and the remedy of an operating-system error, without the path."""
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
    """Context manager yielding a file object; the file appears at ``path`` only on success.  An error of the
    environment (:data:`ENVIRONMENT_ERRNOS`: disk full, directory removed, ...) becomes a one-line
    :class:`~flowlearn._checks.UserOSError` naming ``path``; the temporary file is removed."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        raise UserOSError(describe_os_error(exc, path)) from exc
    try:
        mask = os.umask(0o022)   # read by setting and restoring it: mkstemp makes 0600, outputs get the user's umask
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
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
    """Create the output directory ``out`` (and parents) after :func:`check_out_dir` and check it is writable
    (else ``UserInputError``)."""
    out = check_out_dir(out, name=name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{name} directory {str(out)!r} cannot be created: {exc.strerror or exc}") from exc
    try:  # os.access lies for root on read-only mounts: probe for real
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".probe.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserInputError(f"{name} directory {str(out)!r} is not writable: {exc.strerror or exc}") from exc
    return out


def check_out_dir(out, *, name: str = "out") -> Path:
    """Check, without creating anything, that ``out`` could be created and written (to fail fast before a long
    computation; :func:`ensure_out_dir` creates it when there is something to write)."""
    out = Path(out)
    try:
        if out.exists():
            if not out.is_dir():
                raise UserInputError(f"{name} must be a directory, got existing file {str(out)!r}")
            if not os.access(out, os.W_OK | os.X_OK):
                raise UserInputError(f"{name} directory {str(out)!r} is not writable")
            return out
        parent = out.absolute().parent
        while not parent.exists():
            parent = parent.parent
    except OSError as exc:   # ENAMETOOLONG (a 300-character component), ELOOP, EACCES on a parent
        raise UserInputError(f"{name} directory {str(out)!r} cannot be used: {os_error_reason(exc)}") from None
    if not parent.is_dir():
        raise UserInputError(f"{name} directory {str(out)!r} cannot be created: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"{name} directory {str(out)!r} cannot be created: {str(parent)!r} is not writable")
    return out


def existing_file(path, what: str, expected: str) -> Path:
    """``Path(path)`` after checking it names an existing file, not a directory (``expected`` says what)."""
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


def _numpy(x):
    """A torch tensor (on any device) as a numpy array; anything else unchanged (torch is not imported)."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def to_jsonable(obj: Any) -> Any:
    """Recursively convert tensors, arrays and numpy scalars to JSON-serialisable objects."""
    obj = _numpy(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
    return obj


def _write(path, write) -> Path:
    """Serialise by ``write(buffer)`` in memory, then store the bytes at ``path`` atomically."""
    buf = io.BytesIO()
    write(buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return Path(path)


def save_json(path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return _write(path, lambda buf: buf.write((json.dumps(to_jsonable(obj), indent=2) + "\n").encode()))


def save_npy(path, array) -> Path:
    """Write an array (numpy or torch) to ``.npy``, atomically."""
    return _write(path, lambda buf: np.save(buf, np.asarray(_numpy(array))))


def save_png(path, image) -> Path:
    """Write an image ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``, uint8 or float in [0, 1] (clipped), to PNG
    atomically."""
    from PIL import Image

    arr = np.asarray(_numpy(image))
    if arr.dtype != np.uint8:
        arr = (np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return _write(path, lambda buf: Image.fromarray(arr).save(buf, format="PNG"))


def save_figure(path, fig) -> Path:
    """Save a matplotlib figure to PNG atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        return _write(path, lambda buf: fig.savefig(buf, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def save_tiff(path, array, axes: str) -> Path:
    """Write ``array`` (uint8, uint16 or float32) as an ImageJ-compatible TIFF with ``axes`` (e.g. ``"YX"``,
    ``"ZYX"``, ``"CYX"``, ``"ZCYX"``), atomically; Fiji, napari and ``tifffile.imread`` read it back with
    the same shape and dtype."""
    import tifffile

    return _write(path, lambda buf: tifffile.imwrite(buf, np.ascontiguousarray(array), imagej=True,
                                                     metadata={"axes": axes}))


def save_weights(path, state: dict) -> Path:
    """``torch.save`` a dictionary of tensors and plain values (numbers, strings, lists, dicts)
    atomically; it loads with ``torch.load(path, weights_only=True)``."""
    import torch

    return _write(path, lambda buf: torch.save(state, buf))


def _npy_header(fh, where: str) -> tuple[tuple, np.dtype]:
    """``(shape, dtype)`` from the header of the ``.npy`` stream ``fh`` (positioned at its start)."""
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(fh)
        reader = {(1, 0): npformat.read_array_header_1_0, (2, 0): npformat.read_array_header_2_0}.get(version)
        shape, _, dtype = reader(fh) if reader else npformat._read_array_header(fh, version)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise UserInputError(f"{where} has no readable .npy header ({exc})") from None
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise UserInputError(f"{where} has a malformed .npy header (shape {shape!r})")
    return shape, np.dtype(dtype)


def _declared_bytes(where: str, shape, dtype, data_bytes: int) -> int:
    """The bytes a header declares; an array declaring more than the file holds is refused."""
    declared = math.prod(shape) * dtype.itemsize
    if data_bytes < declared:
        raise UserInputError(f"{where} declares a {dtype} array of shape {shape} ({declared:,} bytes) but holds "
                             f"{max(data_bytes, 0):,} bytes of data: the file is truncated or not a real .npy array")
    return declared


def check_npy(path, where: str, *, extra_per_element: float = 0.0, hint: str = "use a smaller array") -> None:
    """Check a ``.npy`` file's header before :func:`numpy.load` allocates what it declares: the magic string,
    a readable header, as many data bytes as the shape and dtype declare, and memory for the array plus
    ``extra_per_element`` bytes per element (the reader's copies).  A 192-byte file that declares a 3.6 TiB
    array is a one-line :class:`UserInputError`, not a 3.6 TiB allocation."""
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise UserInputError(f"{where} is not a NumPy .npy file (missing the .npy header)")
        fh.seek(0)
        shape, dtype = _npy_header(fh, where)
        data_bytes = os.fstat(fh.fileno()).st_size - fh.tell()
    if not dtype.hasobject:   # object arrays are refused by np.load(allow_pickle=False) with its own message
        declared = _declared_bytes(where, shape, dtype, data_bytes)
        check_memory(f"reading {where} (a {dtype} array of shape {shape})",
                     declared + extra_per_element * (declared // max(dtype.itemsize, 1)), hint=hint)


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
            if f"{name}.npy" not in archive.namelist():
                continue
            info = archive.getinfo(f"{name}.npy")
            with archive.open(info) as fh:
                shape, dtype = _npy_header(fh, f"{where} array {name!r}")
                data_bytes = info.file_size - fh.tell()
            if dtype.hasobject:
                continue
            declared = _declared_bytes(f"{where} array {name!r}", shape, dtype, data_bytes)
            total += declared
            count += declared // max(dtype.itemsize, 1)
    check_memory(f"reading {where} ({total:,} bytes of arrays)", total + extra_per_element * count, hint=hint)
