"""Benchmark: time and peak memory of one loss gradient by ``lowrank``, ``autodiff-expint`` and ``autodiff-euler``.

Usage::

    .venv/bin/python -m benchmarks.gradient --out gradient.json            # 64^2 .. 512^2, J = 8
    .venv/bin/python -m benchmarks.gradient --quick --out gradient_quick.json
    .venv/bin/python -m benchmarks.gradient --compare-dtypes --out gradient_dtypes.json   # float32 vs float64
    .venv/bin/python -m benchmarks.gradient --quick --device cuda --out gradient_cuda.json

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

``--compare-dtypes`` (issue 10, item 4): the ``lowrank`` gradient at one size (``--compare-size``, default
512, J = 8) in float64 and float32, in the same run, at each of ``--compare-threads`` (default 1 and
2): time, peak live memory (as above) and the cosine between the float32 and the float64 gradient
(each child saves its gradient); prints the ratios float64/float32 against the issue's targets
(cosine >= 0.999, >= 1.7x faster, >= 1.8x less peak memory) and writes them to the JSON.

``--device cuda``: problem and gradient on the GPU (``torch.cuda.synchronize()`` around every timed
gradient); ``peak_mb`` is then ``torch.cuda.max_memory_allocated`` over the allocation before the
gradient (the caching allocator's live peak, so the second, ``MALLOC_MMAP_THRESHOLD_`` run is skipped)
and ``host_peak_mb`` the resident-set growth of that child.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._memory import measure, resolve_device, synchronize
from flowlearn.io import save_json

ROOT = Path(__file__).resolve().parents[1]  # the children run as ``python -m benchmarks.gradient`` from here

METHODS = ("lowrank", "lowrank-lean", "autodiff-expint", "autodiff-euler")
AUTODIFF = ("autodiff-expint", "autodiff-euler")


def _child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    from flowlearn.data import make_voronoi
    from flowlearn.learning import LearningProblem
    from flowlearn.linearized.methods import method_from_name

    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    T = 5.0
    opts = {"lowrank": {"m": 10, "rank": 1}, "lowrank-lean": {"m": 10, "rank": 1, "recompute_forward": True},
            "autodiff-expint": {"m": 10, "substeps": 1}, "autodiff-euler": {"step_size": T / 10}}[args.method]
    method = method_from_name(args.method.removesuffix("-lean"), **opts)
    warm = make_voronoi(16, scenario="colors", seed=1)
    wp = LearningProblem.from_image(warm.image, warm.labels, warm.prototypes, rho=0.1, T=T, dtype=dtype,
                                    device=device)
    wp.evaluate(wp.weights.patches, method)  # load kernels / allocator
    v = make_voronoi(args.size, scenario="colors", seed=0)
    problem = LearningProblem.from_image(v.image, v.labels, v.prototypes, rho=0.1, T=T, dtype=dtype,
                                         device=device)
    patches = problem.weights.patches
    problem.stencil()  # per-problem structure (CSR pattern of Omega, Omega^T), built once like the graph
    with measure(device) as mem:
        r = problem.evaluate(patches, method)
    first = mem["seconds"]
    times = [first]
    for _ in range(args.repeat):
        synchronize(device)
        t0 = time.perf_counter()
        problem.evaluate(patches, method)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    if args.save_grad:
        import numpy as np

        np.save(args.save_grad, r.grad.detach().to("cpu", torch.float64).numpy())
    J = problem.num_labels
    print(json.dumps({"size": args.size, "method": args.method, "dtype": args.dtype, "threads": args.threads,
                      "device": str(device), "seconds": min(times), "first_seconds": first,
                      "all_seconds": times, "peak_mb": mem["peak_mb"], "memory_kind": mem["memory_kind"],
                      "host_peak_mb": mem.get("host_peak_mb", mem["peak_mb"]), "loss": r.loss,
                      "grad_norm": float(torch.linalg.vector_norm(r.grad)), "pixels": args.size ** 2,
                      "labels": J, "k": args.size ** 2 * J + 1}))


def _child_run(size, method, args, repeat, extra_env, *, threads=None, dtype=None, save_grad=None):
    threads = args.threads if threads is None else threads
    dtype = args.dtype if dtype is None else dtype
    cmd = [sys.executable, "-m", "benchmarks.gradient", "--child", "--size", str(size), "--method", method,
           "--threads", str(threads), "--repeat", str(repeat), "--dtype", dtype, "--device", args.device]
    if save_grad:
        cmd += ["--save-grad", str(save_grad)]
    env = dict(os.environ, FLOWLEARN_NO_PROGRESS="1", OMP_NUM_THREADS=str(threads), **extra_env)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout, check=False,
                              cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"size": size, "method": method, "dtype": dtype, "threads": threads,
                "error": [f"timed out after {args.timeout:.0f} s"]}
    if proc.returncode != 0:
        return {"size": size, "method": method, "dtype": dtype, "threads": threads,
                "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_one(size, method, args, *, threads=None, dtype=None, save_grad=None):
    timed = _child_run(size, method, args, args.repeat, {}, threads=threads, dtype=dtype, save_grad=save_grad)
    if "error" in timed:
        return timed
    if timed.get("memory_kind", "").startswith("cuda"):
        return dict(timed, peak_mb_default_malloc=None)  # the device allocator's peak is already the live peak
    mem = _child_run(size, method, args, 0, {"MALLOC_MMAP_THRESHOLD_": "65536"}, threads=threads, dtype=dtype)
    if "error" in mem:
        return mem
    return dict(timed, peak_mb=mem["peak_mb"], peak_mb_default_malloc=timed["peak_mb"])


#: issue 10, item 4: float32 against float64 of the lowrank gradient, same run
DTYPE_TARGETS = {"cosine": 0.999, "speedup": 1.7, "memory_saving": 1.8}


def _cosine(a_path, b_path) -> tuple[float, float]:
    import numpy as np

    a, b = np.load(a_path).ravel(), np.load(b_path).ravel()
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
    return cos, rel


def compare_dtypes(args) -> dict:
    """float64 and float32 ``lowrank`` gradients at one size, at each thread count (see module docstring)."""
    size = args.compare_size if args.compare_size is not None else (64 if args.quick else 512)
    method = args.compare_method
    rows, comparison = [], []
    print(f"float32 vs float64, {method} gradient, {size}x{size}, J = 8, device {args.device}")
    print(f"{'threads':>7} {'dtype':>8} {'seconds':>9} {'peak MB':>9} {'loss':>12}")
    with tempfile.TemporaryDirectory(prefix="flowlearn-grad-") as tmp:
        for threads in args.compare_threads:
            got = {}
            for dtype in ("float64", "float32"):
                path = Path(tmp) / f"grad_{threads}_{dtype}.npy"
                row = _run_one(size, method, args, threads=threads, dtype=dtype, save_grad=path)
                row.setdefault("threads", threads)
                row.setdefault("dtype", dtype)
                rows.append(row)
                if "error" in row:
                    print(f"{threads:>7} {dtype:>8} failed: {row['error']}")
                    continue
                got[dtype] = (row, path)
                print(f"{threads:>7} {dtype:>8} {row['seconds']:>9.3f} {row['peak_mb']:>9.1f} {row['loss']:>12.6g}",
                      flush=True)
            if len(got) < 2:
                continue
            (r64, p64), (r32, p32) = got["float64"], got["float32"]
            cos, rel = _cosine(p32, p64)
            c = {"threads": threads, "size": size, "method": method,
                 "seconds_float64": r64["seconds"], "seconds_float32": r32["seconds"],
                 "peak_mb_float64": r64["peak_mb"], "peak_mb_float32": r32["peak_mb"],
                 "speedup_float32": r64["seconds"] / r32["seconds"],
                 "memory_saving_float32": r64["peak_mb"] / max(r32["peak_mb"], 1e-9),
                 "cosine": cos, "one_minus_cosine": 1.0 - cos, "relative_difference": rel,
                 "loss_relative_difference": abs(r32["loss"] - r64["loss"]) / abs(r64["loss"])}
            c["targets_met"] = {"cosine": cos >= DTYPE_TARGETS["cosine"],
                                "speedup": c["speedup_float32"] >= DTYPE_TARGETS["speedup"],
                                "memory_saving": c["memory_saving_float32"] >= DTYPE_TARGETS["memory_saving"]}
            comparison.append(c)
    print(f"{'threads':>7} {'time 64/32':>11} {'memory 64/32':>13} {'1 - cosine':>12} {'rel. diff':>10}  targets "
          f"(>= {DTYPE_TARGETS['speedup']}x, >= {DTYPE_TARGETS['memory_saving']}x, >= {DTYPE_TARGETS['cosine']})")
    for c in comparison:
        met = c["targets_met"]
        flags = ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items())
        print(f"{c['threads']:>7} {c['speedup_float32']:>10.2f}x {c['memory_saving_float32']:>12.2f}x "
              f"{c['one_minus_cosine']:>12.2e} {c['relative_difference']:>10.2e}  {flags}")
    return {"size": size, "method": method, "targets": DTYPE_TARGETS, "rows": rows, "comparison": comparison,
            "all_targets_met": bool(comparison) and all(all(c["targets_met"].values()) for c in comparison)
            and len(comparison) == len(args.compare_threads)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gradient.json")
    ap.add_argument("--quick", action="store_true", help="sizes 32 and 64 only")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (problem and gradient on that device)")
    ap.add_argument("--compare-dtypes", action="store_true",
                    help="float32 vs float64 lowrank gradient at --compare-size, at each of --compare-threads")
    ap.add_argument("--compare-size", type=int, default=None, help="image side for --compare-dtypes "
                    "(default 512; 64 with --quick)")
    ap.add_argument("--compare-threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--compare-method", choices=METHODS, default="lowrank")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--save-grad", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    device = resolve_device(args.device)  # fail fast, before any child starts
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.compare_dtypes:
        load_start = os.getloadavg()
        print(f"load average at start: {load_start}")
        cmp = compare_dtypes(args)
        result = {"benchmark": "gradient-dtypes", "J": 8, "T": 5.0, "device": str(device), "repeat": args.repeat,
                  "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_start": load_start,
                              "loadavg_at_end": os.getloadavg()},
                  **cmp}
        save_json(args.out, result)
        print(f"-> {args.out}")
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
              "device": str(device),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_start": load_start,
                          "loadavg_at_end": load},
              "rows": rows, "summary": summary}
    save_json(args.out, result)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
