"""``imd eval`` behind the CLI: load a model folder, build the test data, evaluate.

Every clip decodes in a sandbox process under ``loader_timeout``: a file that hangs
mid-stream inside FFmpeg (or crashes the decoder) is skipped and listed with the other
unusable files (``skipped_files``), and the evaluation goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from imd_core.errors import DataError
from imd_core.train.config import DEFAULT_LOADER_TIMEOUT

logger = logging.getLogger(__name__)


def select_split(index: Any, split: str | None) -> tuple[Any, str]:
    """The part of the dataset to evaluate: ``split``; by default the data's own ``test``
    split, else its ``val`` split, else every clip (clips without a split count as all)."""
    if split == "all":
        return index, "all"
    if split is not None:
        part = index.split(split)
        if not len(part):
            raise DataError(f"the dataset has no clips in split {split!r}; choose another --split or 'all'")
        return part, split
    for name in ("test", "val"):
        part = index.split(name)
        if len(part):
            return part, name
    return index, "all"


def evaluate_model_folder(
    model_dir: Path,
    data: Path,
    *,
    views: tuple[int, int] = (1, 1),
    split: str | None = None,
    batch_size: int = 8,
    num_workers: int = 2,
    device: str = "auto",
    precision: str = "auto",
    loader_timeout: float | None = None,
) -> dict[str, Any]:
    """Evaluates a model folder on a dataset; returns the ``imd eval --json`` mapping.

    Dataset classes are matched to the model's labels by name (case-insensitively); a
    class the model does not know is refused (DataError).

    Under ``torchrun`` each process evaluates its share of the batches and every
    process returns the same (gathered) result, equal to a single process's.

    Args:
        views: ``(clips, crops)`` test views; crops must be 1 or 3.
        loader_timeout: seconds one clip's decode may take (default ``DEFAULT_LOADER_TIMEOUT``);
            past it the file is skipped as hanging.
    """

    import torch

    from imd_core.train.distributed import init_distributed, shutdown_distributed

    joined_here = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    info = init_distributed("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        return _evaluate_folder(
            model_dir,
            data,
            info,
            views=views,
            split=split,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            precision=precision,
            loader_timeout=DEFAULT_LOADER_TIMEOUT if loader_timeout is None else loader_timeout,
        )
    finally:
        if joined_here:
            shutdown_distributed()


def _evaluate_folder(
    model_dir: Path,
    data: Path,
    info: Any,
    *,
    views: tuple[int, int],
    split: str | None,
    batch_size: int,
    num_workers: int,
    device: str,
    precision: str,
    loader_timeout: float,
) -> dict[str, Any]:
    from imd_core.data.dataset import ClipDataset
    from imd_core.data.manifest import load_dataset_index
    from imd_core.data.transforms import ClipPreprocessor
    from imd_core.model.checkpoint import load_model
    from imd_core.train.engine import resolve_train_device
    from imd_core.train.evaluate import evaluate
    from imd_core.train.setup import make_eval_loader

    dev = resolve_train_device(device, info.local_rank)
    model = load_model(model_dir, device=dev)
    # Clips without a split stay in "train" (ratio 1, 0, 0): only explicit splits select.
    index = load_dataset_index(data, labels=model.labels, split_ratios=(1.0, 0.0, 0.0))
    part, split_name = select_split(index, split)
    clips, crops = views
    pre = ClipPreprocessor.from_model_config(model.config, test_clips=clips, test_crops=crops)
    ds = ClipDataset(part, pre, train=False, multi_view=clips * crops > 1, timeout=loader_timeout)
    loader = make_eval_loader(
        ds, batch_size, num_workers, pin=dev.type == "cuda", rank=info.rank, world_size=info.world_size
    )
    metrics = evaluate(model, loader, device=dev, precision=precision, dist=info)
    items = metrics.pop("skipped_items")
    skipped = [(part.entries[i].path, why) for i, why in items]
    return {
        "model": str(model_dir),
        "data": str(data),
        "split": split_name,
        "views": f"{clips}x{crops}",
        "labels": model.labels,
        **metrics,
        "skipped_files": skipped,
    }
