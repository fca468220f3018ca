"""Benchmark: Krylov exponential integration of the linearized assignment flow vs SciPy.

Solves V(T) = T phi(T A) B for a 512x512 image, J = 10 labels, 3x3 neighbourhoods
(k = I*J = 2.6 million unknowns) with flowlearn's Krylov integrator (m = 10) and with
``scipy.sparse.linalg.expm_multiply`` on the augmented system [[T A, T b], [0, 0]] e_{k+1},
where SciPy gets the sparse augmented matrix (assembled directly; its assembly time and
memory are reported separately and not counted). Reports time, peak memory, the speed ratio and the
relative difference of the two solutions; writes JSON.

``--device cuda`` runs the Krylov integrator on the GPU (system built there, ``torch.cuda.synchronize()``
around each timing, peak memory from ``torch.cuda.max_memory_allocated``); the SciPy baseline always
runs on the CPU (on a CPU copy of the same system), which the JSON records
(``scipy_expm_multiply.device: "cpu"``).

    python -m benchmarks.linearized_forward [--size 512] [--labels 10] [--T 10] [--device cpu|cuda] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks._memory import environment, measure, resolve_device
from flowlearn.data import make_voronoi
from flowlearn.graphs import GridWeights
from flowlearn.io import save_json
from flowlearn.labeling import distance_matrix
from flowlearn.linearized import LinearizedSystem
from flowlearn.solvers import krylov_phi


def build_system(size: int, J: int, seed: int = 0, device="cpu") -> LinearizedSystem:
    v = make_voronoi(size, scenario="colors", seed=seed)
    g = np.random.default_rng(seed)
    protos = np.concatenate([v.prototypes, g.random((max(0, J - len(v.prototypes)), 3))])[:J]
    D = distance_matrix(torch.from_numpy(v.image).to(device), protos)
    return LinearizedSystem.at(GridWeights(size, size, 3, dtype=torch.float64, device=device), D)


def sparse_augmented(sysm: LinearizedSystem, T: float):
    """The augmented sparse matrix [[T A^J, T b], [0, 0]] in CSR, assembled directly.

    Row (i, j) of A^J = Diag(R_S)(Omega kron I_J) holds omega_{i,n} (R_{S_i})_{j,l} at column
    (k(i,n), l); masked (out-of-image) slots are dropped.
    """
    import scipy.sparse as sp

    S = sysm.S.numpy()
    I, J = S.shape
    w = sysm.weights.weights.numpy()                       # (I, N)
    idx = sysm.weights.neighbour_index().numpy()           # (I, N)
    mask = sysm.weights.mask.numpy()
    R = -S[:, :, None] * S[:, None, :]
    R[:, np.arange(J), np.arange(J)] += S
    nnz_per_row = mask.sum(1) * J                          # per node, same for each of its J rows
    data = (T * w[:, None, :, None] * R[:, :, None, :])     # (I, J, N, J)
    cols = idx[:, None, :, None] * J + np.arange(J)[None, None, None, :]
    keep = np.broadcast_to(mask[:, None, :, None], data.shape)
    data, cols = data[keep], np.broadcast_to(cols, data.shape)[keep]
    k = I * J
    b = T * sysm.B.numpy().reshape(-1)
    indptr = np.zeros(k + 2, dtype=np.int64)
    per_row = np.repeat(nnz_per_row, J) + 1                # + the column of b
    indptr[1:k + 1] = np.cumsum(per_row)
    indptr[k + 1] = indptr[k]
    all_data = np.empty(indptr[k])
    all_cols = np.empty(indptr[k], dtype=np.int64)
    ends = indptr[1:k + 1]
    body = np.ones(indptr[k], dtype=bool)
    body[ends - 1] = False
    all_data[body], all_cols[body] = data, cols
    all_data[ends - 1], all_cols[ends - 1] = b, k
    return sp.csr_array((all_data, all_cols, indptr), shape=(k + 1, k + 1))


def scipy_solution(aug) -> np.ndarray:
    import scipy.sparse.linalg as spla

    e = np.zeros(aug.shape[0])
    e[-1] = 1.0
    return spla.expm_multiply(aug, e)[:-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--T", type=float, default=10.0)
    ap.add_argument("--m", type=int, default=10)
    ap.add_argument("--rtol", type=float, default=1e-8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="128x128 instead of 512x512")
    ap.add_argument("--device", default="cpu", help="device of the Krylov run (cpu or cuda; SciPy stays on the CPU)")
    ap.add_argument("--out", default="benchmarks/results/linearized_forward.json")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    size = 128 if args.quick else args.size
    sysm = build_system(size, args.labels, device=device)
    sysm_cpu = sysm if device.type == "cpu" else build_system(size, args.labels)

    # time: best of n runs; peak memory: the first run (later runs reuse memory the allocator kept)
    krylov = None
    for rep in range(args.repeats):
        with measure(device) as m_k:
            r = krylov_phi(sysm.matvec, sysm.B, args.T, m=args.m, rtol=args.rtol)
        if krylov is None:
            krylov = dict(m_k, stats=r.stats, error_estimate=r.error_estimate, all_seconds=[])
        krylov["all_seconds"].append(m_k["seconds"])
        krylov["seconds"] = min(krylov["all_seconds"])
        y_k = r.y.reshape(-1).cpu().numpy()
    with measure() as m_a:
        aug = sparse_augmented(sysm_cpu, args.T)
    with measure() as m_s:
        y_s = scipy_solution(aug)
    m_s["assembly_seconds"], m_s["assembly_peak_mb"], m_s["nnz"] = m_a["seconds"], m_a["peak_mb"], int(aug.nnz)
    m_s["device"] = "cpu"  # SciPy has no GPU path: the baseline always runs on the CPU
    rel = float(np.linalg.norm(y_k - y_s) / np.linalg.norm(y_s))
    result = {
        "problem": {"size": size, "labels": args.labels, "unknowns": size * size * args.labels, "T": args.T,
                    "neighbourhood": 3},
        "device": str(device),
        "krylov": {"m": args.m, "rtol": args.rtol, "device": str(device), **krylov},
        "scipy_expm_multiply": m_s,
        "speedup": m_s["seconds"] / krylov["seconds"],
        "memory_ratio": m_s["peak_mb"] / max(krylov["peak_mb"], 1e-9),
        "relative_difference": rel,
        "environment": environment(device),
    }
    print(f"linearized flow forward, {size}x{size}, J={args.labels}, T={args.T}  "
          f"({result['problem']['unknowns']:,} unknowns); krylov on {device}, scipy on cpu")
    print(f"{'method':<24}{'seconds':>10}{'peak MB':>10}")
    print(f"{f'krylov (m={args.m}, {device.type})':<24}{krylov['seconds']:>10.3f}{krylov['peak_mb']:>10.1f}   {krylov['stats']}")
    print(f"{'scipy expm_multiply cpu':<24}{m_s['seconds']:>10.3f}{m_s['peak_mb']:>10.1f}   "
          f"(+ assembly of {m_s['nnz']:,} non-zeros: {m_a['seconds']:.1f} s, {m_a['peak_mb']:.0f} MB)")
    print(f"speed-up {result['speedup']:.1f}x, relative difference {rel:.2e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
