"""Benchmark: time and peak memory of one loss gradient by ``lowrank``, ``autodiff-expint`` and ``autodiff-euler``.

Usage::

    .venv/bin/python benchmarks/gradient.py --out gradient.json            # 64^2 .. 512^2, J = 8
    .venv/bin/python benchmarks/gradient.py --quick --out gradient_quick.json

Every (size, method) runs in a fresh subprocess (``--threads`` torch threads), so that the peak
resident memory it reports belongs to that gradient alone: the growth of the resident set's high-water
mark over the resident set before the gradient, the mark reset first (``benchmarks/_memory.py``), the
problem already built.  glibc keeps freed blocks below its (adaptive) mmap threshold resident and
reuses them, which blurs such numbers, so ``peak_mb`` comes from a second run of the child with
``MALLOC_MMAP_THRESHOLD_=65536`` (every large tensor mapped and unmapped: the resident set is the live
memory) and the time from a run with the default allocator (``peak_mb_default_malloc`` is that run's
reading).  Problem: a noisy Voronoi image of the
``colors`` scenario (J = 8), uniform 3x3 patches, rho = 0.1, T = 5; ``lowrank`` with m = 10, r = 1,
``lowrank-lean`` the same with ``recompute_forward=True`` (one Krylov basis alive at a time),
``autodiff-expint`` with m = 10 (one Krylov step), ``autodiff-euler`` with T/h = 10 steps.  The
per-problem CSR pattern of the stencil (``LearningProblem.stencil()``) is built before the measurement,
like the problem itself.  Time is
the minimum over ``--repeat`` gradients after the measured first one.  Ratios are to ``lowrank``
measured in the same run; the summary gives, for both low-rank variants, the speed-up over the fastest
and the memory saving over the leanest autodiff method of the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import measure  # noqa: E402

from flowlearn.io import save_json  # noqa: E402

METHODS = ("lowrank", "lowrank-lean", "autodiff-expint", "autodiff-euler")
AUTODIFF = ("autodiff-expint", "autodiff-euler")


def _child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from flowlearn.data import make_voronoi
    from flowlearn.learning import LearningProblem, make_gradient_method

    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    T = 5.0
    opts = {"lowrank": {"m": 10, "rank": 1}, "lowrank-lean": {"m": 10, "rank": 1, "recompute_forward": True},
            "autodiff-expint": {"m": 10, "substeps": 1}, "autodiff-euler": {"step_size": T / 10}}[args.method]
    method = make_gradient_method(args.method.removesuffix("-lean"), **opts)
    warm = make_voronoi(16, scenario="colors", seed=1)
    wp = LearningProblem.from_image(warm.image, warm.labels, warm.prototypes, rho=0.1, T=T, dtype=dtype)
    method(wp, wp.weights.patches)  # load kernels / allocator
    v = make_voronoi(args.size, scenario="colors", seed=0)
    problem = LearningProblem.from_image(v.image, v.labels, v.prototypes, rho=0.1, T=T, dtype=dtype)
    patches = problem.weights.patches
    problem.stencil()  # per-problem structure (CSR pattern of Omega, Omega^T), built once like the graph
    with measure() as mem:
        r = method(problem, patches)
    first = mem["seconds"]
    times = [first]
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        method(problem, patches)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"size": args.size, "method": args.method, "seconds": min(times), "first_seconds": first,
                      "all_seconds": times, "peak_mb": mem["peak_mb"], "loss": r.loss,
                      "grad_norm": float(torch.linalg.vector_norm(r.grad)), "pixels": args.size ** 2,
                      "k": args.size ** 2 * 8 + 1}))


def _child_run(size, method, args, repeat, extra_env):
    cmd = [sys.executable, __file__, "--child", "--size", str(size), "--method", method, "--threads",
           str(args.threads), "--repeat", str(repeat), "--dtype", args.dtype]
    env = dict(os.environ, FLOWLEARN_NO_PROGRESS="1", OMP_NUM_THREADS=str(args.threads), **extra_env)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        return {"size": size, "method": method, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_one(size, method, args):
    timed = _child_run(size, method, args, args.repeat, {})
    if "error" in timed:
        return timed
    mem = _child_run(size, method, args, 0, {"MALLOC_MMAP_THRESHOLD_": "65536"})
    if "error" in mem:
        return mem
    return dict(timed, peak_mb=mem["peak_mb"], peak_mb_default_malloc=timed["peak_mb"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gradient.json")
    ap.add_argument("--quick", action="store_true", help="sizes 32 and 64 only")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    sizes = args.sizes or ([32, 64] if args.quick else [64, 128, 256, 512])
    rows = []
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"load average at start: {load_start}")
    print(f"{'size':>6} {'method':>16} {'seconds':>9} {'peak MB':>9} {'time/lowrank':>13} {'mem/lowrank':>12}")
    for size in sizes:
        base = None
        for method in METHODS:
            row = _run_one(size, method, args)
            if method == "lowrank" and "error" not in row:
                base = row
            if base is not None and "error" not in row:
                row["time_ratio_to_lowrank"] = row["seconds"] / base["seconds"]
                row["memory_ratio_to_lowrank"] = row["peak_mb"] / max(base["peak_mb"], 1e-9)
            rows.append(row)
            if "error" in row:
                print(f"{size:>6} {method:>16} failed: {row['error']}")
            else:
                print(f"{size:>6} {method:>16} {row['seconds']:>9.3f} {row['peak_mb']:>9.1f} "
                      f"{row.get('time_ratio_to_lowrank', float('nan')):>13.2f} "
                      f"{row.get('memory_ratio_to_lowrank', float('nan')):>12.2f}", flush=True)
    summary = []
    for size in sizes:
        ok = {r["method"]: r for r in rows if r["size"] == size and "error" not in r}
        auto = [ok[m] for m in AUTODIFF if m in ok]
        for name in ("lowrank", "lowrank-lean"):
            if name in ok and auto:
                fastest, leanest = min(auto, key=lambda r: r["seconds"]), min(auto, key=lambda r: r["peak_mb"])
                mine = ok[name]
                summary.append({"size": size, "method": name,
                                "speedup_vs_fastest_autodiff": fastest["seconds"] / mine["seconds"],
                                "fastest_autodiff": fastest["method"],
                                "memory_saving_vs_leanest_autodiff": leanest["peak_mb"] / max(mine["peak_mb"], 1e-9),
                                "leanest_autodiff": leanest["method"]})
                print(f"{size:>6} {name:>16}: {summary[-1]['speedup_vs_fastest_autodiff']:.2f}x faster than "
                      f"{fastest['method']}, {summary[-1]['memory_saving_vs_leanest_autodiff']:.2f}x less peak memory "
                      f"than {leanest['method']}")
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    result = {"benchmark": "gradient", "J": 8, "T": 5.0, "threads": args.threads, "dtype": args.dtype,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_start": load_start,
                          "loadavg_at_end": load},
              "rows": rows, "summary": summary}
    save_json(args.out, result)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
