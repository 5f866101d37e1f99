"""Deterministic data order, so a resumed run sees exactly what an uninterrupted one saw.

Epoch ``e``'s order is drawn from ``(seed, e)`` alone and each item's augmentation from
``(seed, e, index)``, whatever the batches before, the worker count or the global RNG.
Under DDP each global batch is cut into per-rank slices, so ``N`` ranks together see
exactly what one process sees.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def epoch_seed(seed: int, epoch: int, index: int = -1) -> int:
    # A fixed mixing (not Python's salted hash) so the value is the same in every process.
    return (seed * 1_000_003 + (epoch + 1) * 9_176_867 + (index + 1) * 104_729) % (2**31 - 1)


class EpochOrderSampler(Sampler[int]):
    """Yields this rank's indices of epoch ``epoch``, starting at micro-batch ``start_batch``.

    Only whole global batches are used (the remainder of the permutation is dropped),
    so every optimiser step averages the same number of clips on every rank.

    Args:
        num_items: dataset length.
        batch_size: clips per rank per micro-batch.
        seed: run seed.
        rank, world_size: DDP position (0, 1 without DDP).
        shuffle: False keeps dataset order (evaluation).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ):
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // (self.batch_size * self.world_size)

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_items))
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.num_items, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        global_batch = self.batch_size * self.world_size
        for b in range(self.start_batch, self.batches_per_epoch):
            chunk = order[b * global_batch : (b + 1) * global_batch]
            yield from chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch) * self.batch_size


class SeededItems(Dataset):
    """Wraps a dataset so item ``i`` of epoch ``e`` is loaded under seed ``(seed, e, i)``.

    Seeds Python's ``random``, NumPy's global RNG and torch's global RNG in the process
    that loads the item (a DataLoader worker or the main process), restoring nothing:
    workers own their RNGs, and in the main process (``num_workers=0``) the caller
    saves and restores the training RNG around loading (see ``isolated_rng``).
    """

    def __init__(self, dataset: Any, seed: int):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        s = epoch_seed(self.seed, self.epoch, index)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        reseed = getattr(self.dataset, "reseed", None)
        if reseed is not None:  # ClipDataset draws its crops, flips and swaps from its own generator
            reseed(s)
        return self.dataset[index]


class isolated_rng:  # noqa: N801 - used as a context manager, reads like one
    """Saves the global RNG states on entry and restores them on exit."""

    def __enter__(self) -> isolated_rng:
        self._torch = torch.get_rng_state()
        self._np = np.random.get_state()
        self._py = random.getstate()
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_rng_state(self._torch)
        np.random.set_state(self._np)
        random.setstate(self._py)


class EvalShardSampler(Sampler[int]):
    """Dataset order, whole batches dealt round-robin to the DDP ranks (evaluation).

    Batch ``k`` of the single-process evaluation (items ``k*batch_size`` to
    ``(k+1)*batch_size - 1``) goes to rank ``k % world_size``, unchanged; so the ranks
    together evaluate exactly the batches one process would, and gathering the
    per-batch results in batch order (:func:`global_batch_index`) reproduces the
    single-process numbers. Only the last batch can be short, and it comes last on
    its rank, so a loader with the same ``batch_size`` cuts this rank's indices into
    exactly those batches.
    """

    def __init__(self, num_items: int, batch_size: int, *, rank: int = 0, world_size: int = 1):
        self.num_items = num_items
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    @property
    def num_batches(self) -> int:
        return -(-self.num_items // self.batch_size)

    def __iter__(self) -> Iterator[int]:
        for k in range(self.rank, self.num_batches, self.world_size):
            yield from range(k * self.batch_size, min(self.num_items, (k + 1) * self.batch_size))

    def __len__(self) -> int:
        return sum(
            min(self.num_items, (k + 1) * self.batch_size) - k * self.batch_size
            for k in range(self.rank, self.num_batches, self.world_size)
        )


def global_batch_index(local_batch: int, rank: int, world_size: int) -> int:
    """The single-process batch number of this rank's ``local_batch``-th batch."""
    return local_batch * world_size + rank
