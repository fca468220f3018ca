"""Progress reporting shared by long-running commands."""

from __future__ import annotations

import os
import sys
import time

__all__ = ["progress"]


class _LogLines:
    """Progress as plain lines (``desc: 120/400 (30 %), 12 s, loss=0.52``) every ``interval`` seconds, for
    logs of batch jobs and notebooks where a terminal bar would be a mess of carriage returns."""

    def __init__(self, iterable, *, total=None, desc: str = "", initial: int = 0, interval: float = 10.0):
        self.iterable, self.desc, self.n, self.interval = iterable, desc, initial, interval
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.postfix: dict = {}
        self.start = self.last = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1
            now = time.monotonic()
            if now - self.last >= self.interval:
                self.last = now
                of = f"/{self.total} ({100 * self.n / self.total:.0f} %)" if self.total else ""
                extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
                print(f"{self.desc}: {self.n}{of}, {now - self.start:.0f} s{extra}", file=sys.stderr, flush=True)

    def set_postfix(self, **kwargs) -> None:
        self.postfix = kwargs

    def close(self) -> None:
        pass


def progress(iterable=None, *, total=None, desc: str = "", enabled: bool | None = None, **kwargs):
    """A progress display on stderr: a ``tqdm`` bar on a terminal, plain lines every 10 s elsewhere.

    ``enabled=None`` (default) shows the bar when stderr is a terminal and plain lines otherwise (a batch
    job's log, a notebook); ``FLOWLEARN_PROGRESS=1`` forces the bar; ``FLOWLEARN_NO_PROGRESS`` and
    ``enabled=False`` hide everything (tests).
    """
    from tqdm.auto import tqdm

    if os.environ.get("FLOWLEARN_NO_PROGRESS"):
        enabled = False
    if enabled is None and not (os.environ.get("FLOWLEARN_PROGRESS") or sys.stderr.isatty()):
        return _LogLines(iterable if iterable is not None else range(total or 0), total=total, desc=desc,
                         initial=kwargs.get("initial", 0))
    return tqdm(iterable, total=total, desc=desc, disable=enabled is False, file=sys.stderr,
                dynamic_ncols=True, leave=False, **kwargs)
