"""``imd eval`` behind the CLI: load a model folder, build the test data, evaluate."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from imd_core.errors import DataError

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
) -> dict[str, Any]:
    """Evaluates a model folder on a dataset; returns the ``imd eval --json`` mapping.

    Dataset classes are matched to the model's labels by name (case-insensitively); a
    class the model does not know is refused (DataError).

    Args:
        views: ``(clips, crops)`` test views; crops must be 1 or 3.
    """
    from imd_core.data.dataset import ClipDataset
    from imd_core.data.manifest import load_dataset_index
    from imd_core.data.transforms import ClipPreprocessor
    from imd_core.model.checkpoint import load_model
    from imd_core.train.engine import resolve_train_device
    from imd_core.train.evaluate import evaluate
    from imd_core.train.setup import make_eval_loader

    dev = resolve_train_device(device)
    model = load_model(model_dir, device=dev)
    # Clips without a split stay in "train" (ratio 1, 0, 0): only explicit splits select.
    index = load_dataset_index(data, labels=model.labels, split_ratios=(1.0, 0.0, 0.0))
    part, split_name = select_split(index, split)
    clips, crops = views
    pre = ClipPreprocessor.from_model_config(model.config, test_clips=clips, test_crops=crops)
    ds = ClipDataset(part, pre, train=False, multi_view=clips * crops > 1)
    loader = make_eval_loader(ds, batch_size, num_workers, pin=dev.type == "cuda")
    metrics = evaluate(model, loader, device=dev, precision=precision)
    items = metrics.pop("skipped_items")
    skipped = [(part.entries[i].path, why) for i, why in items]
    return {
        "model": str(model_dir), "data": str(data), "split": split_name, "views": f"{clips}x{crops}",
        "labels": model.labels, **metrics, "skipped_files": skipped,
    }
