"""DDP under ``torchrun``: process-group set-up, rank helpers, reductions.

``torchrun --nproc_per_node=N -m imd_core train ...`` sets ``RANK``, ``LOCAL_RANK``
and ``WORLD_SIZE``; :func:`init_distributed` reads them and joins the group (NCCL on
CUDA, gloo on CPU). Without them everything runs as a single process (rank 0 of 1).
Side effects (events, logs, checkpoints) happen on rank 0 only.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from imd_core.distributed import DistInfo, join_from_env, leave


def init_distributed(device_type: str) -> DistInfo:
    """Joins the process group if launched by torchrun; returns this process's place."""
    if device_type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return join_from_env("nccl" if device_type == "cuda" else "gloo", timeout_minutes=30)


def shutdown_distributed() -> None:
    leave()


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's decision (stop now, early-stop) reaches every rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def any_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if it is true on any (a signal reached one of them)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
