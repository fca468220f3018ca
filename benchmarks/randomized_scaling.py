"""Benchmark of randomized assignment flows: training speed and sampling throughput vs batch size.

Usage::

    .venv/bin/python -m benchmarks.randomized_scaling --out bench.json [--quick] [--threads 1] [--device cpu|cuda]
    .venv/bin/python -m benchmarks.randomized_scaling --scaling --out scaling.json [--threads 1] [--max-nodes 65536]

``--scaling``: time per training iteration (batch 16, score estimator), sampling throughput and
peak memory against the number of nodes n (24 -> 65 536, square-ish binary Potts grids with random
fields) for the dense node, sparse and conv interactions (dense only up to ``--max-dense``),
ratios against the smallest n, the sparse-over-dense speed-up at n = 1600 and the targets
(256 x 256: iteration <= 2 s, peak <= 2 GB, sampling >= 50 samples/s).

Model: the Table 1 grid (3 x 8, field 3, coupling 2.1), flow as in ``flowlearn ising``.
Training: Adam iterations per second of the KL objective (score entropy estimator) for several
batch sizes; sampling: integer samples per second for several chunk sizes, plus the wall time
of a full 10^6-sample evaluation.  Ratios are relative to the first (smallest) batch size
measured in the same run.  Peak memory: growth of the resident set's high-water mark during each
measurement (``benchmarks/_memory.py``, includes torch's tensors) and ru_maxrss of the whole process;
with ``--device cuda`` model, flow and generators live on the GPU, every timing is bracketed by
``torch.cuda.synchronize()`` and ``peak_mb`` is ``torch.cuda.max_memory_allocated`` over the entry
allocation (``host_peak_mb`` the resident-set growth).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from benchmarks._memory import environment, measure, resolve_device, synchronize
from flowlearn.experiments.table1 import IsingExperimentConfig
from flowlearn.io import save_json
from flowlearn.pgm import exact_inference
from flowlearn.randomized import TrainingConfig, evaluate_flow, train_randomized_flow


def measure_training(config: IsingExperimentConfig, model, batch_size: int, iterations: int) -> dict:
    flow = config.build_flow(model)
    with measure(model.device) as m:
        train_randomized_flow(flow, model, TrainingConfig(iterations=iterations, batch_size=batch_size,
                                                          entropy_estimator="score", random_roundings=4),
                              show_progress=False)
    seconds = m["seconds"]
    return {"batch_size": batch_size, "iterations": iterations, "seconds": seconds,
            "iterations_per_second": iterations / seconds, "samples_per_second": iterations * batch_size / seconds,
            "peak_mb": m["peak_mb"], "host_peak_mb": m.get("host_peak_mb", m["peak_mb"])}


def measure_sampling(flow, chunk_size: int, num_samples: int) -> dict:
    gen = torch.Generator(device=flow.device).manual_seed(0)
    with measure(flow.device) as m:
        flow.sample(num_samples, gen, chunk_size=chunk_size)
    seconds = m["seconds"]
    return {"chunk_size": chunk_size, "num_samples": num_samples, "seconds": seconds,
            "samples_per_second": num_samples / seconds, "peak_mb": m["peak_mb"],
            "host_peak_mb": m.get("host_peak_mb", m["peak_mb"])}


SCALING_GRIDS = [(2, 12), (12, 12), (40, 40), (64, 64), (128, 128), (256, 256)]


def _vm_hwm_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_scaling_point(rows: int, cols: int, interaction: str, device, *, batch: int = 16, iterations: int = 2,
                          samples: int = 128) -> dict:
    """One (grid, interaction) point: seconds per training iteration, samples/s, peak memory."""
    from flowlearn.pgm import potts_grid
    from flowlearn.randomized import (
        ConvInteraction,
        NodeInteraction,
        RandomizedAssignmentFlow,
        SparseInteraction,
    )

    gen = torch.Generator().manual_seed(0)
    model = potts_grid(torch.randn(rows, cols, 2, generator=gen, dtype=torch.float64).to(device), 1.0)
    omega = {"node": lambda: NodeInteraction(drive_scale="degree"), "conv": lambda: ConvInteraction((rows, cols)),
             "sparse": lambda: SparseInteraction(model.edges, drive_scale="degree")}[interaction]()
    flow = RandomizedAssignmentFlow(model.num_nodes, 2, interaction=omega, init_noise=0.5,
                                    initial_logits=-0.5 * model.unary, dtype=torch.float32, device=device)
    cfg = {"batch_size": batch, "entropy_estimator": "score", "random_roundings": 4, "lr": 1e-2}
    train_randomized_flow(flow, model, TrainingConfig(iterations=1, **cfg), show_progress=False)  # warm-up
    with measure(device) as m:
        train_randomized_flow(flow, model, TrainingConfig(iterations=iterations, **cfg), show_progress=False)
    g = torch.Generator(device=device).manual_seed(1)
    flow.sample(2, g)  # warm-up: first no-grad call at a new size
    with measure(device) as ms:
        flow.sample(samples, g)
    return {"rows": rows, "cols": cols, "nodes": rows * cols, "interaction": interaction, "batch_size": batch,
            "seconds_per_iteration": m["seconds"] / iterations, "train_peak_mb": m["peak_mb"],
            "samples_per_second": samples / ms["seconds"], "sampling_peak_mb": ms["peak_mb"],
            "sampling_chunk": flow.sampling_chunk_size(), "process_peak_rss_mb": _vm_hwm_mb()}


def run_scaling(args, device) -> int:
    rows_out = []
    print(f"device={device}  threads={torch.get_num_threads()}  batch 16  (shared machine: noisy)")
    print(f"{'n':>7}{'omega':>8}{'s/iter':>10}{'ratio':>9}{'samples/s':>11}{'train MB':>10}{'RSS MB':>9}")
    grids = SCALING_GRIDS if not args.grids else [tuple(int(v) for v in g.split("x")) for g in args.grids.split(",")]
    for rows, cols in grids:
        if rows * cols > args.max_nodes:
            continue
        for inter in args.interactions.split(","):
            if inter == "node" and rows * cols > args.max_dense:
                continue
            r = measure_scaling_point(rows, cols, inter, device)
            base = next((x for x in rows_out if x["interaction"] == inter), r)
            r["ratio_seconds_per_iteration"] = r["seconds_per_iteration"] / base["seconds_per_iteration"]
            rows_out.append(r)
            print(f"{r['nodes']:>7}{inter:>8}{r['seconds_per_iteration']:>10.3f}{r['ratio_seconds_per_iteration']:>9.1f}"
                  f"{r['samples_per_second']:>11.1f}{r['train_peak_mb']:>10.0f}{r['process_peak_rss_mb']:>9.0f}",
                  flush=True)
    pick = {(r["nodes"], r["interaction"]): r for r in rows_out}
    summary = {}
    if (1600, "node") in pick and (1600, "sparse") in pick:
        summary["sparse_over_dense_speedup_n1600"] = (pick[(1600, "node")]["seconds_per_iteration"]
                                                      / pick[(1600, "sparse")]["seconds_per_iteration"])
    for inter in ("sparse", "conv"):
        r = pick.get((65536, inter))
        if r:
            summary[f"targets_256x256_{inter}"] = {
                "iteration_seconds": r["seconds_per_iteration"], "iteration_le_2s": r["seconds_per_iteration"] <= 2,
                "peak_mb": max(r["train_peak_mb"], 0.0), "process_peak_rss_mb": r["process_peak_rss_mb"],
                "peak_le_2gb": r["process_peak_rss_mb"] <= 2048, "samples_per_second": r["samples_per_second"],
                "sampling_ge_50_per_s": r["samples_per_second"] >= 50}
    print(json.dumps(summary, indent=1))
    result = {"kind": "scaling", "threads": torch.get_num_threads(), "device": str(device),
              "environment": environment(device), "batch_size": 16, "labels": 2,
              "memory_note": "train_peak_mb: growth of the process high-water mark during the measurement (0 when "
                             "an earlier point already reached it); process_peak_rss_mb: the process high-water mark "
                             "after the point (an upper bound, includes ~300 MB of Python and torch)",
              "rows": rows_out, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_json(args.out, result)
    print(f"-> {args.out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON output file")
    parser.add_argument("--quick", action="store_true", help="small version (seconds)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--scaling", action="store_true", help="scaling in the number of nodes (see above)")
    parser.add_argument("--max-nodes", type=int, default=65536, help="largest n of --scaling")
    parser.add_argument("--grids", default=None, help="comma-separated ROWSxCOLS grids of --scaling (default: all)")
    parser.add_argument("--interactions", default="node,sparse,conv", help="interactions of --scaling")
    parser.add_argument("--max-dense", type=int, default=1600, help="largest n of the dense node Omega")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.scaling:
        return run_scaling(args, device)
    config = IsingExperimentConfig()
    model = config.build_model(device)
    iters = 20 if args.quick else 100
    train_batches = [32, 128] if args.quick else [64, 128, 256, 512, 1024]
    sample_chunks = [256, 4096] if args.quick else [256, 4096, 65536]
    n_samples = 20000 if args.quick else 200000

    measure_training(config, model, train_batches[0], 3)  # warm-up (first-call overheads)
    train_rows = [measure_training(config, model, b, iters) for b in train_batches]
    base = train_rows[0]["iterations_per_second"]
    for r in train_rows:
        r["ratio_iterations_per_second"] = r["iterations_per_second"] / base

    flow = config.build_flow(model)
    sample_rows = [measure_sampling(flow, c, n_samples) for c in sample_chunks]
    base = sample_rows[0]["samples_per_second"]
    for r in sample_rows:
        r["ratio_samples_per_second"] = r["samples_per_second"] / base

    exact = exact_inference(model)
    eval_n = 50000 if args.quick else 10**6
    synchronize(device)
    t0 = time.perf_counter()
    ev = evaluate_flow(flow, model, exact, num_samples=eval_n,
                       generator=torch.Generator(device=device).manual_seed(1))
    synchronize(device)
    evaluation = {"num_samples": eval_n, "seconds": time.perf_counter() - t0, "support": ev.support,
                  "exact_inference_seconds": exact.seconds}

    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"model": "3x8 grid, field 3, coupling 2.1", "threads": torch.get_num_threads(), "quick": args.quick,
              "device": str(device), "memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "host VmHWM growth",
              "environment": environment(device),
              "dtype": config.dtype, "training": train_rows, "sampling": sample_rows, "evaluation": evaluation,
              "peak_rss_mb": maxrss_mb}
    print(f"device={device}  threads={result['threads']}  (timings on a shared machine are noisy)")
    print(f"{'train batch':>12}{'it/s':>10}{'ratio':>8}{'samples/s':>12}{'peak MB':>10}")
    for r in train_rows:
        print(f"{r['batch_size']:>12}{r['iterations_per_second']:>10.1f}{r['ratio_iterations_per_second']:>8.2f}"
              f"{r['samples_per_second']:>12.0f}{r['peak_mb']:>10.1f}")
    print(f"{'sample chunk':>12}{'samples/s':>12}{'ratio':>8}{'peak MB':>10}")
    for r in sample_rows:
        print(f"{r['chunk_size']:>12}{r['samples_per_second']:>12.0f}{r['ratio_samples_per_second']:>8.2f}"
              f"{r['peak_mb']:>10.1f}")
    print(f"evaluation of {eval_n} samples: {evaluation['seconds']:.1f} s; exact inference "
          f"{exact.seconds:.1f} s; peak RSS {maxrss_mb:.0f} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_json(args.out, result)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
