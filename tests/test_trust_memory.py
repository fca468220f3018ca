"""The memory estimates of the commands are honest: the measured peak within 1.5x of the estimate, on two sizes.

Every command that allocates in proportion to its input checks an estimate against the memory available
before it allocates (:func:`flowlearn._checks.check_memory`).  What an estimate covers: the *growth* of the
command's peak resident memory over the interpreter with ``flowlearn.cli.main`` imported and its parser
built (Python, torch, NumPy: the baseline every command starts from).  Each case runs in a fresh
subprocess that records the baseline (``/proc/self/statm``), runs the command in-process, and reports its peak
(``getrusage(RUSAGE_SELF).ru_maxrss``) and every estimate the command made; the command's estimate is the
largest.  ``segment`` has its own test.

``.venv/bin/python tests/test_trust_memory.py`` prints the table of ``docs/reliability.md``.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

#: the child: records every estimate, measures the baseline after the imports, runs the command, reports
CHILD = r"""
import json, resource, sys
import flowlearn._checks as checks
estimates = []
real = checks.check_memory
def check_memory(what, nbytes, **kw):
    estimates.append([what, float(nbytes)])
    return real(what, nbytes, **kw)
checks.check_memory = check_memory      # before the commands import it
from flowlearn.cli.main import build_parser, main
build_parser()
with open("/proc/self/statm") as fh:
    base = int(fh.read().split()[1]) * resource.getpagesize()
code = main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("MEMJSON" + json.dumps({"code": code, "base": base, "peak": peak, "estimates": estimates}), file=sys.stderr)
"""


def _idx(path: Path, arr: np.ndarray) -> None:
    path.write_bytes(struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())


def _fake_mnist(d: Path, n: int) -> Path:
    """MNIST-format IDX files of ``n`` training and ``n // 10`` test images (random bytes)."""
    rng = np.random.default_rng(0)
    d.mkdir()
    for prefix, count in (("train", n), ("t10k", n // 10)):
        _idx(d / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        _idx(d / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, count, dtype=np.uint8))
    return d


def _labeler_model(d: Path) -> Path:
    from flowlearn.learning.labeler import LabelerModel, save_model
    from flowlearn.learning.labeler_config import LabelerConfig

    save_model(d / "model.pt", LabelerModel(LabelerConfig(), 1, 2),
               {"input_scale": 255.0, "value_range": [0.0, 1.0], "input_dtype": "uint8"})
    return d / "model.pt"


def _setup(kind: str, size, d: Path) -> list:
    """The argv (without ``--out``) of case ``kind`` at ``size``, with its input files made in ``d``."""
    rng = np.random.default_rng(0)
    if kind == "label":
        np.save(d / "image.npy", rng.random((size, size, 3)))
        return ["label", d / "image.npy", "--k", "3"]
    if kind == "label --model":
        np.save(d / "image.npy", rng.integers(0, 256, (size, size), dtype=np.uint8))
        return ["label", d / "image.npy", "--model", _labeler_model(d)]
    if kind == "train-labeler":
        images = rng.integers(0, 256, (4, size, size), dtype=np.uint8)
        np.savez(d / "data.npz", images=images, labels=(images > 127).astype(np.int64))
        return ["train-labeler", "--data", d / "data.npz", "--train", "0-2", "--val", "3", "--iterations", "2",
                "--eval-every", "1", "--pretrain-steps", "0"]   # flow steps and a validation, not the warm-up
    if kind == "voronoi":
        return ["voronoi", "--size", size]
    if kind == "ising":
        return ["ising", "--rows", size, "--cols", size, "--iters", "2", "--reference", "gibbs",
                "--reference-samples", "2000", "--reference-burn-in", "10", "--gibbs-samples", "2000",
                "--gibbs-burn-in", "10", "--eval-samples", "2000", "--mf-restarts", "10"]
    if kind == "gfe train":
        return ["gfe", "train", "--dataset", "mnist", "--data-dir", _fake_mnist(d / "mnist", size), "--images", "256",
                "--eval-every", "1000"]
    raise ValueError(kind)


#: (command, the two sizes, how the size is shown)
CASES = [
    ("label", (400, 800), "{0}x{0} RGB, --k 3"),
    ("label --model", (512, 1024), "{0}x{0} uint8, default model"),
    ("train-labeler", (256, 512), "4 images {0}x{0}, 2 steps with the flow"),
    ("voronoi", (1000, 2000), "--size {0}"),
    ("ising", (12, 16), "{0}x{0}, batch 256"),
    ("gfe train", (20000, 60000), "MNIST format, {0} images"),
]


def measure(kind: str, size, d: Path) -> dict:
    """``{"estimate", "measured", "baseline"}`` in bytes for one run of case ``kind`` at ``size``."""
    argv = [str(a) for a in _setup(kind, size, d)] + ["--out", str(d / "out")]
    env = dict(os.environ, FLOWLEARN_NO_PROGRESS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], check=False, capture_output=True, text=True, cwd=d,
                          env=env, timeout=1800)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("MEMJSON")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    report = json.loads(lines[-1][len("MEMJSON"):])
    assert report["code"] == 0 and report["estimates"], report
    return {"estimate": max(n for _, n in report["estimates"]), "measured": report["peak"] - report["base"],
            "baseline": report["base"]}


def _params():
    for kind, sizes, _ in CASES:
        for size in sizes:
            yield pytest.param(kind, size, id=f"{kind} {size}")


@pytest.mark.slow
@pytest.mark.parametrize("kind, size", list(_params()))
def test_estimate_is_within_1_5x_of_the_measured_peak(kind, size, tmp_path):
    m = measure(kind, size, tmp_path)
    ratio = m["measured"] / m["estimate"]
    assert 1 / 1.5 <= ratio <= 1.5, (f"{kind} at {size}: measured {m['measured'] / 1e6:.0f} MB, estimate "
                                     f"{m['estimate'] / 1e6:.0f} MB, ratio {ratio:.2f}")


def _markdown() -> str:
    import tempfile

    rows = ["| command | size | estimate (MB) | measured peak growth (MB) | measured / estimate |",
            "|---|---|---|---|---|"]
    baselines = []
    for kind, sizes, shown in CASES:
        for size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                m = measure(kind, size, Path(tmp))
            baselines.append(m["baseline"])
            rows.append(f"| {kind} | {shown.format(size)} | {m['estimate'] / 1e6:.0f} | {m['measured'] / 1e6:.0f} | "
                        f"{m['measured'] / m['estimate']:.2f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    rows.append("")
    rows.append(f"Baseline (interpreter, torch, NumPy, `flowlearn.cli.main` imported): "
                f"{min(baselines) / 1e6:.0f}-{max(baselines) / 1e6:.0f} MB resident.")
    return "\n".join(rows)


if __name__ == "__main__":
    print(_markdown())
