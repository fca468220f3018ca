"""Data-parallel training under ``torchrun`` (gloo on the CPU, NCCL on CUDA): each trainer splits its global
batch over the ranks and sums the gradients (:func:`all_reduce_gradients` or ``DistributedDataParallel``), so
that ``n`` processes compute the one-process gradient; rank 0 writes checkpoints and outputs."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .._checks import UserInputError, check_choice

__all__ = ["all_gather_cat", "all_reduce_gradients", "all_reduce_sum", "cleanup", "setup", "world"]


def world() -> tuple[int, int]:
    """``(world_size, rank)``; ``(1, 0)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def setup(backend: str = "auto") -> tuple[int, int, torch.device]:
    """Join the process group of torchrun's environment; ``backend="auto"`` is NCCL when CUDA is available, gloo
    otherwise.  Returns ``(world_size, rank, device)``, the device ``cuda:LOCAL_RANK`` under NCCL, else CPU."""
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


def all_reduce_gradients(parameters) -> None:
    """Sum ``p.grad`` over the ranks in place (no-op in one process)."""
    if world()[0] == 1:
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over the ranks (a copy; ``values`` itself in one process)."""
    if world()[0] == 1:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_cat(local: torch.Tensor) -> torch.Tensor:
    """Concatenate equal-shaped ``local`` tensors of all ranks along dim 0, in rank order, detached except for
    this rank's own block: a loss of the whole batch computed on every rank back-propagates into each rank's
    own samples, and :func:`all_reduce_gradients` sums the parts."""
    size, rank = world()
    if size == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(size)]
    dist.all_gather(parts, local.detach().contiguous())
    parts[rank] = local
    return torch.cat(parts, dim=0)
