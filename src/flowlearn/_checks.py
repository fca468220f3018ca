"""Input validation shared by the whole package: bad input fails early with a one-line ``ValueError`` (or
``TypeError``) naming the argument, the value or shape received and what was expected -- never a deep torch
traceback or a silent NaN."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch

__all__ = ["ComputationError", "UserFileNotFoundError", "UserInputError", "UserOSError", "UserTypeError", "as_tensor",
           "check_choice", "check_dtype_float", "check_finite", "check_int", "check_memory", "check_ndim",
           "check_positive", "check_probability_rows", "check_seed", "check_shape", "check_unit_interval"]


class UserInputError(ValueError):
    """Bad input from the user: the one exception the CLI turns into a one-line error and exit 2.

    Every check of this package raises it (or a subclass), so that a library bug -- any other exception --
    keeps its traceback.  It is a ``ValueError``, so code that catches ``ValueError`` keeps working."""


class ComputationError(UserInputError):
    """A computation failed for the settings given (did not converge, overflowed, stayed undecided): raised
    instead of returning a failed result as an answer; the message names the cause and the option to change.
    The CLI exits with code 3."""


class UserTypeError(UserInputError, TypeError):
    """An argument of the wrong type (also a ``TypeError``)."""


class UserFileNotFoundError(UserInputError, FileNotFoundError):
    """A named input file does not exist (also a ``FileNotFoundError``)."""


class UserOSError(UserInputError, OSError):
    """The operating system refused a read or write for a reason the user can fix -- a full disk, an output
    directory removed during the run, a name too long, no permission (also an ``OSError``).  The message
    names the path and the reason."""


def as_tensor(name: str, x, *, dtype=None, device=None) -> torch.Tensor:
    """Convert ``x`` (tensor, array or nested list) to a floating tensor: integer input becomes
    ``torch.get_default_dtype()``; floating input keeps its dtype unless ``dtype`` is given."""
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise UserTypeError(f"{name} must be array-like, got {type(x).__name__}") from exc
    if dtype is not None:
        t = t.to(dtype=dtype)
    elif not t.is_floating_point():
        if t.is_complex():
            raise UserTypeError(f"{name} must be real, got complex dtype {t.dtype}")
        t = t.to(torch.get_default_dtype())
    if device is not None:
        t = t.to(device)
    return t


def check_dtype_float(name: str, x: torch.Tensor) -> None:
    """Raise ``TypeError`` unless ``x`` is float32 or float64 (half precision is refused, not silently wrong)."""
    if not x.is_floating_point():
        raise UserTypeError(f"{name} must have a floating dtype (float32 or float64), got {x.dtype}")
    if x.dtype in (torch.float16, torch.bfloat16):
        raise UserTypeError(f"{name} must be float32 or float64, got {x.dtype}: half precision is not supported "
                            f"(Krylov bases and simplex lifts lose their accuracy); cast with .float() first")


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ``ValueError`` if ``x`` contains NaN or +-inf."""
    if x.numel() and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise UserInputError(f"{name} must be finite, got {int((~torch.isfinite(x)).sum())} NaN/inf entries "
                             f"(first at index {tuple(bad)}, value {x[tuple(bad)].item()})")


def check_unit_interval(name: str, x: torch.Tensor, *, hint: str = "") -> None:
    """Raise ``UserInputError`` unless every entry of ``x`` lies in ``[0, 1]``."""
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise UserInputError(f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
                                 + (f"; {hint}" if hint else ""))


def check_ndim(name: str, x, ndims: Iterable[int]) -> None:
    """Raise ``ValueError`` unless ``x.ndim`` is one of ``ndims``."""
    ndims = tuple(ndims)
    if x.ndim not in ndims:
        allowed = " or ".join(str(n) for n in ndims)
        array = isinstance(x, (torch.Tensor, np.ndarray))
        got = f"array of shape {tuple(x.shape)} and dtype {x.dtype}" if array else repr(x)
        raise UserInputError(f"{name} must be {allowed}-dimensional, got {got}")


def check_shape(name: str, x, expected: Sequence[int | None]) -> None:
    """Check ``x.shape`` against ``expected``; ``None`` entries match any size."""
    shape = tuple(x.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))
    if not ok:
        exp = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise UserInputError(f"{name} must have shape {exp}, got shape {shape}")


def check_positive(name: str, value, *, strict: bool = True) -> float:
    """Return ``float(value)`` after checking it is a finite (strictly) positive number."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise UserTypeError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or (v <= 0 if strict else v < 0):
        rel = "> 0" if strict else ">= 0"
        raise UserInputError(f"{name} must be finite and {rel}, got {value!r}")
    return v


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None,
              odd: bool = False) -> int:
    """Return ``int(value)`` after range (and optional oddness) checks."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserTypeError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise UserInputError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise UserInputError(f"{name} must be <= {maximum}, got {v}")
    if odd and v % 2 == 0:
        raise UserInputError(f"{name} must be odd, got {v}")
    return v


#: seeds are accepted in [0, 2**32 - 1], the range every generator used here (torch, NumPy, scikit-learn) takes
MAX_SEED = 2**32 - 1


def check_seed(name: str, value) -> int:
    """Return ``int(value)`` after checking it is a seed in ``[0, 2**32 - 1]``."""
    return check_int(name, value, minimum=0, maximum=MAX_SEED)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_left() -> int | None:
    """``RLIMIT_AS`` (``ulimit -v``) less the address space this process already uses."""
    try:
        import resource
    except ImportError:          # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm") as fh:
            used = int(fh.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        used = 0
    return max(0, soft - used)


def _cgroup_left() -> int | None:
    """The cgroup's ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1) less its current usage."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as fh:
                raw = fh.read().strip()
            if raw == "max" or int(raw) >= 2**60:
                continue
            with open(usage_file) as fh:
                usage = int(fh.read().strip())
            return max(0, int(raw) - usage)
        except (OSError, ValueError):
            continue
    return None


def available_memory() -> int:
    """Bytes of memory available to a new allocation: the least of ``MemAvailable``, what ``RLIMIT_AS``
    (``ulimit -v``) leaves to this process and what the cgroup's ``memory.max`` leaves (containers,
    Slurm jobs); ``FLOWLEARN_MEMORY_LIMIT`` in bytes overrides them all."""
    if os.environ.get("FLOWLEARN_MEMORY_LIMIT"):
        return int(float(os.environ["FLOWLEARN_MEMORY_LIMIT"]))
    limits = [v for v in (_meminfo_available(), _address_space_left(), _cgroup_left()) if v is not None]
    return min(limits) if limits else 2**62


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000


def check_memory(what: str, nbytes: float, *, hint: str) -> None:
    """Refuse a request whose estimated memory ``nbytes`` exceeds what the machine has available; the message
    names the request (``what``), the estimate, the memory available and ``hint`` (which option to change)."""
    avail = available_memory()
    if nbytes > avail:
        raise UserInputError(f"{what} needs about {_bytes(nbytes)} of memory, more than the {_bytes(avail)} "
                             f"available; {hint}")


def check_choice(name: str, value, choices: Iterable) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise UserInputError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_probability_rows(name: str, x: torch.Tensor, *, strict: bool = True, atol: float | None = None) -> None:
    """Check that the rows (last axis) of ``x`` are (strictly) positive and sum to one."""
    check_finite(name, x)
    bad = (x <= 0) if strict else (x < 0)
    if bool(bad.any()):
        idx = tuple(bad.nonzero()[0].tolist())
        what = "strictly positive" if strict else "non-negative"
        raise UserInputError(f"{name} must be {what}, got {x[idx].item()} at index {idx}")
    if atol is None:
        atol = 1e-5 if x.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-10
    sums = x.sum(-1)
    err = (sums - 1).abs()
    if err.numel() and float(err.max()) > atol * max(1, x.shape[-1]):
        k = int(err.reshape(-1).argmax())
        raise UserInputError(f"{name} rows must sum to 1, got a row summing to {sums.reshape(-1)[k].item():.6g} "
                             f"(row {k})")
