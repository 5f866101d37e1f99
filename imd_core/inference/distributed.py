"""``imd predict`` under ``torchrun``: shard the inputs, gather the results on rank 0.

Each rank classifies its share of the files (round robin, see
:func:`~imd_core.inference.inputs.shard`) on its own device, then every rank's outcomes
travel to rank 0, which writes them in input order. Only Python objects are exchanged,
so the group always uses gloo (it works on CPU-only machines and beside CUDA alike).
"""

from __future__ import annotations

from typing import Any

from imd_core.distributed import DistInfo, join_from_env, leave

RankInfo = DistInfo  # the name this module's callers use


def init_from_env(timeout_minutes: float = 60.0) -> RankInfo:
    """Joins the torchrun process group (gloo) when ``WORLD_SIZE > 1``; a no-op otherwise."""
    return join_from_env("gloo", timeout_minutes=timeout_minutes)


def gather_to_main(obj: Any, info: RankInfo) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank 0 (``None`` elsewhere)."""
    if not info.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def shutdown(info: RankInfo) -> None:
    if info.enabled:
        leave()
