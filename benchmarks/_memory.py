"""Peak-memory measurement and device selection for benchmarks.

CPU: resets and reads the process's VmHWM (Linux).  CUDA: ``torch.cuda.max_memory_allocated``
(peak of the tensors torch's caching allocator handed out) over the allocation at entry, with
``torch.cuda.synchronize()`` before the clock starts and before it stops.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from contextlib import contextmanager


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _fail(message: str):
    print(message, file=sys.stderr)
    raise SystemExit(2)


def resolve_device(name: str):
    """``torch.device(name)``; exits with a one-line message (status 2) when CUDA is asked but unavailable."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        _fail(f"error: --device {name!r} is not a device (use cpu or cuda)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            _fail(f"error: --device {name} asked, but CUDA is not available (torch {torch.__version__}, "
                     f"{build}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            _fail(f"error: --device {name} asked, but only {torch.cuda.device_count()} CUDA device(s) exist")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        _fail(f"error: --device {name} is not supported (use cpu or cuda)")
    return dev


def synchronize(device) -> None:
    """Wait for queued kernels on ``device`` (no-op on CPU)."""
    import torch

    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def measure(device=None):
    """Context manager yielding a dict filled with ``seconds`` and ``peak_mb`` (and ``memory_kind``).

    CPU (``device`` None or cpu): ``peak_mb`` is the growth of the resident set's high-water mark over
    the RSS at entry (the high-water mark is reset at entry through /proc/self/clear_refs).
    CUDA: ``peak_mb`` is ``torch.cuda.max_memory_allocated`` (reset at entry) minus the memory
    allocated at entry, and ``host_peak_mb`` the resident-set growth as above.
    """
    import torch

    cuda = device is not None and torch.device(device).type == "cuda"
    gc.collect()
    result = {}
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        supported = True
    except OSError:
        supported = False
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        alloc0 = torch.cuda.memory_allocated(device)
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    try:
        yield result
    finally:
        if cuda:
            torch.cuda.synchronize(device)
        result["seconds"] = time.perf_counter() - t0
        host = (_status_kb("VmHWM") - rss0) / 1024 if supported else float("nan")
        if cuda:
            result["peak_mb"] = (torch.cuda.max_memory_allocated(device) - alloc0) / 2**20
            result["host_peak_mb"] = host
            result["memory_kind"] = "cuda max_memory_allocated"
        else:
            result["peak_mb"] = host
            result["memory_kind"] = "host VmHWM growth"


def environment(device=None) -> dict:
    import platform

    import torch

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "loadavg": os.getloadavg(),
        "device": str(device) if device is not None else "cpu",
    }
    if device is not None and torch.device(device).type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
