"""Peak-memory measurement for benchmarks (Linux: resets and reads the process's VmHWM)."""

from __future__ import annotations

import gc
import os
import time
from contextlib import contextmanager


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


@contextmanager
def measure():
    """Context manager yielding a dict filled with ``seconds`` and ``peak_mb``.

    ``peak_mb`` is the growth of the resident set's high-water mark over the RSS at entry
    (the high-water mark is reset at entry through /proc/self/clear_refs).
    """
    gc.collect()
    result = {}
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        supported = True
    except OSError:
        supported = False
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - t0
        result["peak_mb"] = (_status_kb("VmHWM") - rss0) / 1024 if supported else float("nan")


def environment() -> dict:
    import platform

    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "loadavg": os.getloadavg(),
    }
