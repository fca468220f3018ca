"""Distributed training under ``torchrun``: DistributedDataParallel over gloo (CPU) or NCCL (GPU).

Usage (2 CPU processes on one machine)::

    python -m torch.distributed.run --nproc_per_node 2 --master_addr 127.0.0.1 --master_port 29511 \\
        -m flowlearn.encoding.distributed --dataset digits --model gfe --train-size 256 --out runs/ddp

Every rank loads the same data and walks the same seeded global batches; rank ``r`` takes the
``r``-th equal part of each global batch (:class:`~flowlearn.encoding.training.Trainer`), so the
parameters after ``n`` steps equal those of one process with the same global batch (up to the
order of floating-point summation in the all-reduce).  Rank 0 evaluates and writes the outputs.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist

from .._checks import UserInputError, check_choice

__all__ = ["cleanup", "main", "setup"]


def setup(backend: str = "auto") -> tuple[int, int, torch.device]:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``).

    Parameters
    ----------
    backend : {"auto", "gloo", "nccl"}
        ``auto``: NCCL when CUDA is available, gloo otherwise.

    Returns
    -------
    (world_size, rank, device) -- the device is ``cuda:LOCAL_RANK`` under NCCL, else CPU.
    """
    check_choice("backend", backend, ("auto", "gloo", "nccl"))
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise UserInputError(f"not started by torchrun: environment variables {missing} are missing")
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return dist.get_world_size(), dist.get_rank(), device


def cleanup() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv=None) -> int:
    """Entry point run by every torchrun process (arguments as ``flowlearn gfe train``)."""
    from ..io import ensure_out_dir, save_checkpoint, save_json
    from .data import load_dataset, training_subset
    from .training import TrainConfig, Trainer

    p = argparse.ArgumentParser(prog="python -m flowlearn.encoding.distributed")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default="gfe")
    p.add_argument("--solver", default="amd")
    p.add_argument("--adjoint", default="approx")
    p.add_argument("--optimizer", default="rmsprop")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--backend", default="auto")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = TrainConfig(model=args.model, solver=args.solver, adjoint=args.adjoint, optimizer=args.optimizer,
                      lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, eval_every=args.eval_every,
                      seed=args.seed)
    world, rank, device = setup(args.backend)
    try:
        data = load_dataset(args.dataset, args.data_dir, dtype=getattr(torch, args.dtype))
        idx = training_subset(data, args.train_size, args.seed)
        if cfg.batch_size % world:
            raise UserInputError(f"--batch-size must be divisible by the world size {world}, got {cfg.batch_size}")
        result = Trainer(cfg, device=device).fit(data, idx)
        if rank == 0:
            out = ensure_out_dir(args.out)
            save_checkpoint(out / "model.pt", {"config": cfg.__dict__, "state_dict": result.module.state_dict()})
            save_json(out / "metrics.json", {"val_bce": result.val_bce, "stats": result.stats,
                                             "history": result.history})
            print(f"rank 0 of {world}: validation BCE {result.val_bce:.6f}; wrote {out}")
    finally:
        cleanup()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
