"""Benchmark of randomized assignment flows: training speed and sampling throughput vs batch size.

Usage::

    .venv/bin/python benchmarks/randomized.py --out bench.json [--quick] [--threads 1] [--device cpu|cuda]

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
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import environment, measure, resolve_device, synchronize  # noqa: E402

from flowlearn.io import save_json  # noqa: E402
from flowlearn.randomized import (  # noqa: E402
    IsingExperimentConfig,
    TrainingConfig,
    evaluate_flow,
    exact_inference,
    train_randomized_flow,
)


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON output file")
    parser.add_argument("--quick", action="store_true", help="small version (seconds)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
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
