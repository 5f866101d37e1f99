"""The one place that reads ``torchrun``'s environment and joins the process group.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them everything
runs as a single process (rank 0 of 1). Training (NCCL on CUDA, gloo on CPU) and
``imd predict`` (gloo: it only exchanges Python objects) both join through here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import timedelta

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def join_from_env(backend: str, timeout_minutes: float = 30.0) -> DistInfo:
    """Joins the torchrun process group with ``backend`` when ``WORLD_SIZE > 1``.

    Returns the default :class:`DistInfo` (rank 0 of 1) outside torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    info = DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=world,
    )
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_minutes))
    log.info("rank %d of %d (local %d), backend %s", info.rank, world, info.local_rank, backend)
    return info


def leave() -> None:
    """Destroys the process group if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
