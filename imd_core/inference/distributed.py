"""``imd predict`` under ``torchrun``: shard the inputs, gather the results on rank 0.

Each rank classifies its share of the files (round robin, see
:func:`~imd_core.inference.inputs.shard`) on its own device, then every rank's outcomes
travel to rank 0, which writes them in input order. Only Python objects are exchanged,
so the group always uses gloo (it works on CPU-only machines and beside CUDA alike).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RankInfo:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(timeout_minutes: float = 60.0) -> RankInfo:
    """Joins the torchrun process group when ``WORLD_SIZE > 1``; a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return RankInfo()
    import torch.distributed as dist

    info = RankInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=timedelta(minutes=timeout_minutes))
    log.info("imd predict: rank %d of %d", info.rank, info.world_size)
    return info


def gather_to_main(obj: Any, info: RankInfo) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank 0 (``None`` elsewhere)."""
    if not info.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def shutdown(info: RankInfo) -> None:
    if not info.enabled:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
